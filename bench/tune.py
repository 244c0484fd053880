"""Compare training recipes of one config on the validation split of one fold, never its test fold.

Each candidate is ``fit`` (no ``test``) on the training folds of ``--fold``; the score is the
validation accuracy (the src_file-grouped split carved from the training folds) at the last epoch
and the mean of the last five epochs. Runs that already finished are read back, not retrained.

    ESC50_ROOT=/path/to/ESC-50 python bench/tune.py --config configs/mlp.yaml \\
        --candidate lr3e-4 "--model.optimizer.init_args.lr=3e-4" \\
        --candidate lr3e-4_mixup "--model.optimizer.init_args.lr=3e-4 --model.mixup_alpha=0.3"
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_root, write  # noqa: E402

from esc50_lightning.cli import main as cli_main  # noqa: E402
from esc50_lightning.figures.curves import read_scalars  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--candidate", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True,
                        help="a name and the command-line overrides of one recipe ('' for the config as it is)")
    args = parser.parse_args()
    data_root()
    name = Path(args.config).stem
    rows = []
    for candidate, overrides in args.candidate:
        run_dir = Path("lightning_logs") / "tune" / name / f"fold{args.fold}" / candidate
        done = run_dir / "done"
        if not done.exists():
            cli_main(["fit", f"--config={args.config}", f"--data.fold={args.fold}",
                      "--trainer.enable_progress_bar=false",
                      "--trainer.logger=TensorBoardLogger", f"--trainer.logger.save_dir={run_dir.parent}",
                      "--trainer.logger.name=", f"--trainer.logger.version={candidate}", *shlex.split(overrides)])
            done.touch()
        val = read_scalars(run_dir)["val/acc"]
        rows.append({"candidate": candidate, "overrides": overrides, "epochs": len(val),
                     "val_accuracy_final": round(float(val[-1]), 4),
                     "val_accuracy_last5": round(float(val[-5:].mean()), 4)})
        print(f"{candidate:24s} val {val[-1]:.3f}  last-5 mean {val[-5:].mean():.3f}")
    figures = {"config": args.config, "fold": args.fold, "score": "validation split only", "rows": rows}
    print(f"wrote {write(f'{name}_tune', figures)}")


if __name__ == "__main__":
    main()
