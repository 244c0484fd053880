"""TensorBoard summary runs, read back with TensorBoard's own readers: the event accumulator and the
HParams plugin's handlers (what its dashboard asks for)."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.context import RequestContext
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups, metadata

from esc50_lightning.results import summarize_run
from esc50_lightning.training.summary import (
    FoldHParams,
    train_clips,
    write_classical_summary,
    write_ensemble_summary,
    write_sweep_summary,
)

NAMES = ["dog", "rain", "siren"]
CONFIG = {
    "seed_everything": 0,
    "trainer": {"precision": "32-true", "max_epochs": 2,
                "callbacks": [{"class_path": "esc50_lightning.training.ema.WarmupEMA", "init_args": {}}]},
    "model": {"net": {"class_path": "esc50_lightning.models.CNN",
                      "init_args": {"channels": [8, 16], "dropout": 0.1, "residual": False, "channels_last": True}},
              "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001}}, "mixup_alpha": 0.2},
    "data": {"fold": 1, "feature": "log_mel", "n_mels": 32, "hop_length": 128, "batch_size": 8,
             "augment": {"gain_db": 6.0, "time_shift": 0.0, "freq_masks": 2, "freq_width": 8, "time_masks": 0,
                         "time_width": 25}},
}
SWEEP_HPARAMS = {"kind": "sweep", "model": "CNN", "net": "channels=8-16 dropout=0.1", "feature": "log_mel",
                 "n_mels": 32, "hop": 128, "epochs": 2, "batch_size": 8, "lr": 0.001, "mixup": 0.2,
                 "augment": "gain6 F2x8", "callbacks": "WarmupEMA", "distill": "none", "precision": "32-true",
                 "seed": 0, "train_clips": 29}  # 40 clips: four folds' 32, less the default tenth for validation
ALL_STATUSES = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING]


def sweep_result(accuracies: list[float], config: dict | None = None, kind: str = "sweep") -> dict:
    folds = [{"fold": k, "accuracy": a, "precision": a, "recall": a, "f1": a - 0.01, "train_seconds": 1.0}
             for k, a in enumerate(accuracies, 1)]
    return {"kind": kind, "config": CONFIG if config is None else config, "dataset": {"clips": 40},
            "runs": [summarize_run("tiny", folds)], "class_names": NAMES,
            "confusion_matrix": [[5, 1, 0], [0, 6, 0], [2, 0, 4]], "total_train_seconds": 2.0, "machines": []}


def plain(value):
    return value.string_value if value.HasField("string_value") else value.number_value


def dashboard(logdir) -> tuple[api_pb2.Experiment, dict[str, tuple[dict, dict]]]:
    """The HParams dashboard's columns (experiment) and rows: run -> (hparams, metric values)."""
    runs = EventMultiplexer()
    runs.AddRunsFromDirectory(str(logdir))
    runs.Reload()
    backend = backend_context.Context(base_plugin.TBContext(
        logdir=str(logdir), multiplexer=runs, data_provider=MultiplexerDataProvider(runs, str(logdir))))
    experiment = get_experiment.Handler(RequestContext(), backend, "", api_pb2.GetExperimentRequest()).run()
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, allowed_statuses=ALL_STATUSES)
    groups = list_session_groups.Handler(RequestContext(), backend, "", request).run().session_groups
    return experiment, {g.name: ({k: plain(v) for k, v in g.hparams.items()},
                                 {m.name.tag: m.value for m in g.metric_values}) for g in groups}


def test_sweep_summary_reads_back(tmp_path):
    sweep = tmp_path / "tiny"
    for _ in range(2):  # a second aggregation replaces the first: still one row
        out = write_sweep_summary(sweep, sweep_result([0.5, 0.6, 0.7, 0.8, 0.9]))
    assert out == sweep / "summary" and len(list(out.iterdir())) == 1
    events = EventAccumulator(str(out))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    assert metadata.EXPERIMENT_TAG not in content  # the dashboard then takes columns from every run
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert {k: plain(v) for k, v in start.hparams.items()} == {**SWEEP_HPARAMS, "folds": 5}
    assert metadata.SESSION_END_INFO_TAG in content
    folds = events.Scalars("summary/fold_accuracy")
    assert [s.step for s in folds] == [1, 2, 3, 4, 5]
    assert [s.value for s in folds] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    assert events.Scalars("hp/accuracy_mean")[-1].value == pytest.approx(0.7)
    assert events.Scalars("hp/accuracy_std")[-1].value == pytest.approx(0.1581139)
    assert events.Scalars("hp/f1_mean")[-1].value == pytest.approx(0.69)
    assert events.Scalars("hp/fold4_accuracy")[-1].value == pytest.approx(0.8)
    for tag in ("summary/confusion_matrix", "summary/per_class_accuracy"):
        image = events.Images(tag)[-1]
        assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 300
    assert "tiny" in events.Tensors("summary/result/text_summary")[-1].tensor_proto.string_val[0].decode()


def test_two_fold_sweep_and_an_ensemble_are_dashboard_rows(tmp_path):
    write_sweep_summary(tmp_path / "two_fold", sweep_result([0.6, 0.8]))
    write_ensemble_summary(tmp_path / "ensemble", sweep_result([0.9], config={"members": ["a", "b"]}))
    experiment, rows = dashboard(tmp_path)
    assert {"model", "lr", "augment", "train_clips", "folds"} <= {h.name for h in experiment.hparam_infos}
    assert {"hp/accuracy_mean", "hp/accuracy_std", "hp/f1_mean", "hp/fold1_accuracy"} <= {
        m.name.tag for m in experiment.metric_infos}
    assert set(rows) == {"two_fold/summary", "ensemble/summary"}
    hparams, metrics = rows["two_fold/summary"]
    assert hparams == {**SWEEP_HPARAMS, "folds": 2}
    assert metrics["hp/accuracy_mean"] == pytest.approx(0.7) and metrics["hp/fold2_accuracy"] == pytest.approx(0.8)
    assert "hp/fold3_accuracy" not in metrics
    hparams, metrics = rows["ensemble/summary"]
    assert hparams["kind"] == hparams["model"] == "ensemble" and hparams["folds"] == 1
    assert metrics["hp/accuracy_mean"] == pytest.approx(0.9) and metrics["hp/accuracy_std"] == 0


def test_classical_rows_are_dashboard_rows(tmp_path):
    runs = [summarize_run(name, [{"fold": k, "accuracy": a + k / 100, "precision": a, "recall": a, "f1": a}
                                 for k in range(1, 6)])
            for name, a in (("log_mel|mean|svm|C=1.0|norm=True", 0.2), ("log_mel|stats|rf|norm=False", 0.4),
                            ("lin|max|svm_cv|norm=True", 0.3))]
    config = {"data": {"feature": "log_mel", "n_mels": 128, "hop_length": 512},
              "features": {"log_mel": {"feature": "log_mel"}, "lin": {"feature": "linear"}}, "seed": 0}
    stale, kept = tmp_path / "old,row", tmp_path / "notes"
    write_sweep_summary(tmp_path / "x", sweep_result([0.5]))  # an old row: folder of events only
    (tmp_path / "x" / "summary").rename(stale)
    kept.mkdir()
    (kept / "README").write_text("not ours")
    write_classical_summary(tmp_path, {"kind": "classical", "config": config, "dataset": {"clips": 2000},
                                       "runs": runs})
    assert not stale.exists() and (kept / "README").exists()
    _, rows = dashboard(tmp_path)
    assert set(rows) == {"log_mel,mean,svm,C=1.0,norm=True", "log_mel,stats,rf,norm=False", "lin,max,svm_cv,norm=True"}
    hparams, metrics = rows["log_mel,mean,svm,C=1.0,norm=True"]
    assert hparams == {"representation": "log_mel", "pooling": "mean", "classifier": "svm", "C": 1.0, "norm": "True",
                       "kind": "classical", "feature": "log_mel", "n_mels": 128, "hop": 512, "seed": 0, "folds": 5,
                       "train_clips": 1600}
    assert metrics["hp/accuracy_mean"] == pytest.approx(0.23) and metrics["hp/f1_mean"] == pytest.approx(0.2)
    assert "C" not in rows["log_mel,stats,rf,norm=False"][0]
    assert rows["lin,max,svm_cv,norm=True"][0]["feature"] == "linear"


def test_fold_run_carries_its_test_accuracy(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="", version="fold2", default_hp_metric=False)
    logger.log_hyperparams({"lr": 0.001})  # what Lightning does at fit start: no placeholder metric now
    dm = SimpleNamespace(meta=list(range(40)), index={"train": list(range(24))})
    trainer = SimpleNamespace(is_global_zero=True, callback_metrics={"test/f1": torch.tensor(0.5)},
                              datamodule=dm, loggers=[logger], global_step=12)
    module = SimpleNamespace(confusion=torch.tensor([[3, 1], [1, 3]]))
    FoldHParams({**CONFIG, "data": {**CONFIG["data"], "fold": 2}}).on_test_end(trainer, module)
    logger.finalize("success")
    _, rows = dashboard(tmp_path)
    hparams, metrics = rows["fold2"]
    assert hparams == {**SWEEP_HPARAMS, "kind": "fold", "fold": 2, "train_clips": 24}
    assert metrics == {"hp/test_accuracy": pytest.approx(0.75), "hp/test_f1": pytest.approx(0.5),
                       "hp/fold2_accuracy": pytest.approx(0.75)}


def test_fold_run_without_a_confusion_matrix_reads_the_accuracy_the_classifier_logs(tmp_path):
    """A module that kept no confusion matrix: the accuracy comes from the metric the classifier
    logs, ``test/acc`` (``test/accuracy`` was a KeyError)."""
    logger = TensorBoardLogger(str(tmp_path), name="", version="fold3", default_hp_metric=False)
    metrics = {"test/acc": torch.tensor(0.625), "test/f1": torch.tensor(0.5)}
    trainer = SimpleNamespace(is_global_zero=True, callback_metrics=metrics, datamodule=None, loggers=[logger],
                              global_step=3)
    FoldHParams({**CONFIG, "data": {**CONFIG["data"], "fold": 3}}).on_test_end(trainer, SimpleNamespace(confusion=None))
    logger.finalize("success")
    _, rows = dashboard(tmp_path)
    assert rows["fold3"][1] == {"hp/test_accuracy": pytest.approx(0.625), "hp/test_f1": pytest.approx(0.5),
                                "hp/fold3_accuracy": pytest.approx(0.625)}


def test_train_clips_as_recorded_else_as_the_split_took_them():
    """Runs written before ``train_clips`` was recorded get what their split took: four of five
    folds, less the validation share unless there was none; an ensemble, its first member's."""
    grouped = {"data": {"val_strategy": "grouped", "val_fraction": 0.1}}
    refit = {"data": {"val_strategy": "none", "val_fraction": 0.1}}
    assert train_clips({"clips": 2000, "train_clips": 1234}, refit) == 1234
    assert train_clips({"clips": 2000}, grouped) == 1440
    assert train_clips({"clips": 2000}, refit) == 1600
    assert train_clips({"clips": 2000}, {"members": ["a"], "member_configs": [refit]}) == 1600
    assert train_clips({}, grouped) is None
