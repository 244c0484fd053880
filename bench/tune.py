"""A hyper-parameter study as a benchmark record: ``esc50-lightning tune``, then its ``study.json``
with the machine and the command into ``bench/results/tune_<name>.json`` (``--result_name`` to
choose another). Every option is ``tune``'s; the search is scored on validation splits only.

    ESC50_ROOT=/path/to/ESC-50 python bench/tune.py --config configs/conv1d.yaml \\
        --space configs/spaces/conv1d.yaml --trials 40 --timeout 9900
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, write  # noqa: E402

from esc50_lightning.cli import main as cli_main  # noqa: E402
from esc50_lightning.commands.tune import build_parser, config_name, split_args  # noqa: E402


def main() -> None:
    argv = sys.argv[1:]
    result_name = None
    if "--result_name" in argv:
        at = argv.index("--result_name")
        result_name, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
    data_root()
    cli_main(["tune", *argv])
    ours, fit_args = split_args(argv)
    cfg = build_parser().parse_args(ours)
    name = cfg.name or config_name(fit_args)
    study_dir = Path(cfg.study_dir or Path("lightning_logs") / "studies" / name)
    study = json.loads((study_dir / "study.json").read_text())
    best = (study_dir / "best.yaml").read_text() if (study_dir / "best.yaml").exists() else None
    print(f"wrote {write(result_name or f'tune_{name}', {**study, 'best_yaml': best})}")


if __name__ == "__main__":
    main()
