"""``esc50-lightning plots``: the visual study, as PNGs and in TensorBoard.

Figures: ``waveform`` (one clip, or one per class with ``--per-class``), ``compare`` (three
representations, and the window x hop grid), ``pooling``, ``curves`` (from ``--run``, a run or
sweep folder), ``confusion`` (from ``--results``, a sweep's JSON) and ``budget`` (accuracy against
training hours, from ``--sweeps``, several sweeps' JSON files). Every spectrogram is drawn
by the product's own ``SpectrogramFrontend``: what the models see.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from esc50_lightning.data.audio import load_clip
from esc50_lightning.data.download import ensure_dataset
from esc50_lightning.data.meta import load_metadata
from esc50_lightning.errors import ESC50Error
from esc50_lightning.figures import save_png

FIGURES = ("waveform", "compare", "pooling", "curves", "confusion", "budget")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="esc50-lightning plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", nargs="*", choices=[*FIGURES, []], default=[],
                        help="which figures (default: every one whose input is available)")
    parser.add_argument("--out", default="docs/figures", help="folder for the PNGs")
    parser.add_argument("--root", help="dataset root (default: $ESC50_ROOT or the cache folder)")
    parser.add_argument("--clip", default="1-100038-A-14.wav", help="file name of the clip to show")
    parser.add_argument("--per-class", action="store_true", help="waveform: one clip per class, as a grid")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--run", help="curves: a run folder or a sweep folder (lightning_logs/...)")
    parser.add_argument("--results", help="confusion: a sweep's results JSON")
    parser.add_argument("--sweeps", nargs="+", default=[], help="budget: sweeps' results JSON files")
    parser.add_argument("--tensorboard", default="lightning_logs/plots", help="TensorBoard log dir ('' for none)")
    parser.add_argument("--dpi", type=int, default=90)
    parser.add_argument("--allow-subset", action="store_true", help="accept a partial dataset")
    return parser.parse_args(argv)


def clips_for(args: argparse.Namespace) -> list[tuple]:
    root = ensure_dataset(args.root)
    meta = load_metadata(root, allow_subset=args.allow_subset, subset_hint="--allow-subset")
    if args.per_class:
        rows = meta.groupby("target").head(1).sort_values("target")
    else:
        rows = meta[meta["filename"] == args.clip]
        if rows.empty:
            rows = meta.head(1)
            print(f"plots: {args.clip} not in {root}; showing {rows.filename.iloc[0]}")
    return [(load_clip(root / "audio" / r.filename, args.sample_rate, int(5 * args.sample_rate)),
             f"{r.category} ({r.filename})") for r in rows.itertuples()]


def make_figures(args: argparse.Namespace) -> dict[str, plt.Figure]:
    from esc50_lightning.figures import audio

    wanted = args.figures or [f for f in FIGURES if (f != "curves" or args.run) and
                              (f != "confusion" or args.results) and (f != "budget" or args.sweeps)]
    figs: dict[str, plt.Figure] = {}
    sr = args.sample_rate
    if {"waveform", "compare", "pooling"} & set(wanted):
        clips = clips_for(args)
        wave, name = clips[0]
        if "waveform" in wanted:
            if args.per_class:
                figs["waveform_classes"] = audio.class_grid_figure(clips, sr)
                clips = clips[:1]
            figs["waveform"] = audio.waveform_figure(clips, sr)
        if "compare" in wanted:
            figs["compare"] = audio.representations_figure(wave, name, sr)
            figs["compare_resolution"] = audio.resolution_grid_figure(wave, name, sr)
        if "pooling" in wanted:
            figs["pooling"] = audio.pooling_figure(wave, name, sr)
    if "curves" in wanted:
        if not args.run:
            raise ESC50Error("curves needs --run (a run folder or a sweep folder under lightning_logs/)")
        from esc50_lightning.figures.curves import curves_figure

        try:
            figs["curves"] = curves_figure(Path(args.run))
        except FileNotFoundError as err:
            raise ESC50Error(str(err)) from None
    if "confusion" in wanted:
        if not args.results:
            raise ESC50Error("confusion needs --results (a sweep's results JSON)")
        from esc50_lightning.figures import confusion_figure

        path = Path(args.results)
        try:
            result = json.loads(path.read_text())
            matrix, names = np.array(result["confusion_matrix"]), result["class_names"]
        except (OSError, ValueError, KeyError) as err:
            raise ESC50Error(f"{path}: not a sweep result with a confusion matrix ({err})") from None
        title = f"{result['runs'][0]['name']}: confusion over {len(result['runs'][0]['folds'])} test folds"
        figs["confusion"] = confusion_figure(matrix, names, title)
    if "budget" in wanted:
        figs["budget"] = budget(args.sweeps)
    return figs


def budget(paths: list[str]) -> plt.Figure:
    """The accuracy-for-hours figure of sweep result files (names: the file names less ``sweep_``)."""
    from esc50_lightning.figures.budget import budget_figure

    if not paths:
        raise ESC50Error("budget needs --sweeps (sweeps' results JSON files)")
    results = {}
    for path in map(Path, paths):
        try:
            result = json.loads(path.read_text())
            result["runs"][0]["mean"]["accuracy"], result["total_train_seconds"]  # noqa: B018 - validate
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise ESC50Error(f"{path}: not a sweep result with accuracies and training time ({err!r})") from None
        results[path.stem.removeprefix("sweep_")] = result
    return budget_figure(results)


def main(argv: list[str]) -> None:
    args = parse(argv)
    figs = make_figures(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = None
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(args.tensorboard)
    for name, fig in figs.items():
        cmap = None if name in ("curves", "confusion", "budget") else "magma"  # spectrogram figures
        path = save_png(fig, out / f"{name}.png", dpi=args.dpi, cmap=cmap)
        if writer is not None:
            writer.add_figure(f"plots/{name}", fig)
        plt.close(fig)
        print(f"plots: {path} ({path.stat().st_size // 1024} KB)")
    if writer is not None:
        writer.close()
