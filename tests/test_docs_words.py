"""The docs speak of the product: not of how or when it was worked on, who had which machine, private
paths or paths outside the repository. Machines are named by what they have (docs/hardware.md). The
configs' comments are read as docs too; a file or README section they point to exists."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
PAGES = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").rglob("*.md")), *CONFIGS]
INTERNAL = {
    r"\bsessions?\b": "how the work was scheduled",
    r"\bwas lent\b|\blent to\b": "who had which machine",
    r"\.\./shared\b|\bDESIGN\.md\b": "a path outside the repository",
    r"/tmp/|ESC-50-16k": "a private path; say how to point ESC50_ROOT at a copy",
    r"(?-i:\bCPU [ABC]\b)": "a machine named by a letter; name it by what it has",
    r"\bthird Xeon\b|\bthe other machine\b": "an unnamed machine; name it by what it has",
    r"\bissue #?\d+": "an issue number; say what the product does",
    r"\bthis (?:period|week|sprint)\b": "how the work was scheduled",
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_internal_words(page: Path) -> None:
    text = page.read_text()
    found = [(line_no, match.group(0), why) for pattern, why in INTERNAL.items()
             for line_no, line in enumerate(text.splitlines(), 1)
             for match in re.finditer(pattern, line, re.IGNORECASE)]
    assert not found, "\n".join(f"{page.relative_to(REPO)}:{n}: '{word}' ({why})" for n, word, why in found)


@pytest.mark.parametrize("page", [p for p in PAGES if p.suffix == ".md"], ids=lambda p: str(p.relative_to(REPO)))
def test_no_issue_numbers_as_headings(page: Path) -> None:
    headings = re.findall(r"^#{1,6} .*$", page.read_text(), re.MULTILINE)
    assert not [h for h in headings if re.search(r"#\d+|\bissue\b", h, re.IGNORECASE)]


def test_the_words_are_caught() -> None:
    samples = ("in this session", "the next session", "CPU A", "no GPU was lent to us", "../shared/DESIGN.md",
               "ESC50_ROOT=/tmp/ESC-50-16k", "Where issue 16 stands")
    for sample in samples:
        assert any(re.search(pattern, sample, re.IGNORECASE) for pattern in INTERNAL), sample
    assert not any(re.search(pattern, "cpu a", re.IGNORECASE) for pattern in INTERNAL)


def dead_pointers(comments: str) -> list[str]:
    """The paths (``docs/hardware.md``, ``bench/results/x.json``, globs such as ``cnn_levers*.json`` or
    ``bench/sweeps/<name>/fold<K>/``) and README sections (``README "Hardware policy"``) that
    ``comments`` names and the repository lacks."""
    dead = []
    for path in re.findall(r"\b((?:docs|bench|esc50_lightning|configs)/[\w./*<>-]*[\w>*])", comments):
        if not list(REPO.glob(re.sub(r"<[^>]+>", "*", path))):
            dead.append(path)
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", (REPO / "README.md").read_text(), re.MULTILINE)}
    for section in re.findall(r"README,? [\"\u201c]([^\"\u201d]+)[\"\u201d]", comments):
        if section.lower() not in headings:
            dead.append(f'README "{section}"')
    return dead


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_comments_point_at_what_exists(config: Path) -> None:
    """A file or README section a config's comment points at exists."""
    comments = "\n".join(re.findall(r"#\s?(.*)$", config.read_text(), re.MULTILINE))
    assert not dead_pointers(comments), f"{config.name} points at {dead_pointers(comments)}, which do not exist"


def test_a_dead_pointer_is_caught() -> None:
    assert dead_pointers('see README "Hardware policy" and bench/results/nothing.json, '
                         'not bench/results/cnn_curve.json or bench/sweeps/<name>/fold<K>/') == \
        ["bench/results/nothing.json", 'README "Hardware policy"']
