"""Every relative link and image in README.md, docs/ and bench/README.md resolves: the file (or
folder) exists inside the repository, and a ``page.md#heading`` anchor names a heading of that page
by GitHub's rules. Every figure in docs/ is shown in the gallery."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)


def prose(text: str) -> str:
    """The text GitHub renders as Markdown: no HTML comments, fenced code blocks or inline code."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, with GitHub's -1, -2 ... for repeated headings."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    return LINK.findall(text) + HTML_LINK.findall(text)


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not target.startswith("//")


CASES = [(page, target) for page in PAGES for target in links(page) if relative(target)]


def test_pages_have_links() -> None:
    assert len(CASES) > 50  # the parser found the pages' links at all


@pytest.mark.parametrize(("page", "target"), CASES,
                         ids=[f"{p.relative_to(REPO)}->{t}" for p, t in CASES])
def test_link_resolves(page: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
    assert resolved.is_relative_to(REPO), f"{page.relative_to(REPO)}: {target} leaves the repository"
    assert resolved.exists(), f"{page.relative_to(REPO)}: {target} does not exist"
    if anchor:
        assert resolved.suffix == ".md", f"{page.relative_to(REPO)}: {target}: anchors only into Markdown pages"
        assert anchor in anchors(resolved), \
            f"{page.relative_to(REPO)}: {target}: no heading '#{anchor}' in {resolved.relative_to(REPO)}"


def test_slug_follows_github() -> None:
    assert slug("Half the frames: `configs/cnn_fast.yaml`") == "half-the-frames-configscnn_fastyaml"
    assert slug("1.5x the channels, 80 epochs") == "15x-the-channels-80-epochs"
    assert slug("fit, validate, test, predict") == "fit-validate-test-predict"


FIGURES = sorted({*(REPO / "docs").glob("*.png"), *(REPO / "docs" / "figures").glob("*.png")})


@pytest.mark.parametrize("figure", FIGURES, ids=lambda p: p.name)
def test_every_figure_is_in_the_gallery(figure: Path) -> None:
    gallery = REPO / "docs" / "gallery.md"
    shown = {(gallery.parent / target).resolve() for target in links(gallery)}
    assert figure.resolve() in shown, f"{figure.relative_to(REPO)} is not shown in docs/gallery.md"
