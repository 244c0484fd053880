"""What ``fit`` says when it ends: the final metrics as one small table, then where the run is.

The metrics a run reached otherwise live only in TensorBoard; ``sweep`` ends with its table, and so
does ``fit`` (``ESC50CLI.after_fit``). The numbers are the trainer's ``callback_metrics``: the last
validation epoch's metrics (summed over DDP ranks, as logged) and the last training epoch's.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer

COLUMNS = (("acc", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("loss", "loss"))
PARTS = (("val", "validation"), ("test", "test"), ("train", "training batches"))  # as trained: augmented, mixed


def metrics_table(metrics: dict[str, float], clips: dict[str, int] | None = None) -> str:
    """A markdown table with a row per part (validation, test, training) that ``metrics`` holds
    (keys such as ``val/acc``), columns accuracy, precision, recall, F1 and loss; '' when none."""
    clips = clips or {}
    lines = []
    for part, label in PARTS:
        cells = [f"{float(metrics[f'{part}/{key}']):.4f}" if f"{part}/{key}" in metrics else "" for key, _ in COLUMNS]
        if any(cells):
            what = f"{label}, {clips[part]} clips" if clips.get(part) else label
            lines.append(f"| {what} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    header = "| " + " | ".join(["clips", *(name for _, name in COLUMNS)]) + " |"
    return "\n".join([header, "|" + "---|" * (len(COLUMNS) + 1), *lines]) + "\n"


def shown(path: str | Path) -> Path:
    """``path`` relative to the working directory when it lies below it (what a user types next)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def scored_clips(clips: dict[str, int], val_batches: int, batch_size: int, world_size: int = 1) -> dict[str, int]:
    """The clips the last validation scored: fewer than the split's when ``limit_val_batches`` cut it
    to ``val_batches`` batches (per process), so the table never names more clips than it scored."""
    if "val" not in clips or val_batches <= 0 or batch_size <= 0:
        return clips
    return {**clips, "val": min(clips["val"], val_batches * batch_size * world_size)}


def fit_report(trainer: Trainer, fold: int | str, clips: dict[str, int]) -> str:
    """The table and a closing line: the accuracy reached, after how many epochs, and where the run's
    checkpoint is with the command that tests it."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    table = metrics_table(metrics, clips).rstrip()
    lines = [f"fit: the last epoch's metrics\n{table}" if table else ""]
    held_out = "every clip trained on" if fold == "all" else f"test fold {fold}"
    if "val/acc" in metrics:
        reached = f"validation accuracy {metrics['val/acc']:.4f}"
    elif "train/acc" in metrics:
        reached = f"no validation split; training accuracy {metrics['train/acc']:.4f}"
    else:
        reached = "no metrics logged"
    epochs = trainer.current_epoch
    lines.append(f"fit: {reached} after {epochs} epoch{'' if epochs == 1 else 's'} ({held_out})")
    checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
    if checkpoint:
        test = "" if fold == "all" else f"; test it: esc50-lightning test --ckpt_path {shown(checkpoint)}"
        lines.append(f"fit: run in {shown(Path(checkpoint).parent.parent)}{test}")
    elif trainer.logger is not None and trainer.log_dir:
        lines.append(f"fit: run in {shown(trainer.log_dir)} (no checkpoint saved)")
    return "\n".join(line for line in lines if line)
