"""Released models [ours]: a run's final network in a documented file, and its evaluation on a prepared
benchmark.

``model.pt`` (beside metrics.json, sealed like it with ``model.pt.sha256``) loads with
``torch.load(path, weights_only=True)``: tensors, lists, numbers and strings only, no pickled code. Keys:

- ``format`` ("wscl-model"), ``format_version`` (1), ``wscl_version``
- ``config``: the run's resolved settings (``wscl train --config-json`` of the same run)
- ``architecture``: ``ResNet18`` with ``n_heads``, ``in_channels``, ``width``; ``state_dict``: its weights and
  BatchNorm statistics, on the CPU
- ``class_to_head``: the head each class was assigned to (-1: a class never seen)
- ``normalisation``: the per-channel mean and std of the inputs; ``image_shape``
- ``eval``: the memory formats and batch size the run evaluated with
- ``final_accuracy``: the run's last accuracy row per setting (Class-IL, Task-IL), percent per task

``evaluate`` rebuilds the network and the benchmark's test tasks from the file alone and scores every task:
on the machine kind that trained it, the row is the recorded one exactly.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wscl import __version__
from wscl.core.errors import RunResultError
from wscl.core.safe_io import RESUME, atomic_torch_save, read_result
from wscl.method.augment import Preprocess
from wscl.method.backbone import ResNet18
from wscl.method.evaluation import SETTINGS, EvalLayout, TestTasks
from wscl.settings.config import Config, Layer, build

FILE_NAME = "model.pt"
FORMAT, FORMAT_VERSION = "wscl-model", 1


@dataclass(frozen=True)
class ReleasedModel:
    """What a finished run releases: its settings (``cfg``), final network and head assignment, the inputs it
    took (``normalisation``: per-channel mean and std; ``image_shape``), the memory formats and batch size it
    ran with (``training_channels_last``; ``eval_layout``, chosen by ``evaluation.choose_layout``) and its last
    accuracy row per setting (``final_rows``)."""
    cfg: Config
    net: ResNet18
    class_to_head: np.ndarray
    normalisation: tuple
    image_shape: tuple
    training_channels_last: bool
    eval_layout: EvalLayout
    final_rows: dict[str, list[float]]


def save_model(path: Path, released: ReleasedModel) -> None:
    net, cfg, layout = released.net, released.cfg, released.eval_layout
    mean, std = released.normalisation
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    model = {"format": FORMAT, "format_version": FORMAT_VERSION, "wscl_version": __version__, "config": cfg.to_dict(),
             "architecture": {"name": "ResNet18", "n_heads": net.classifier.out_features,
                              "in_channels": int(released.image_shape[0]), "width": cfg.model.width},
             "state_dict": state, "class_to_head": [int(h) for h in released.class_to_head],
             "normalisation": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
             "image_shape": [int(d) for d in released.image_shape],
             "eval": {"training_channels_last": bool(released.training_channels_last),
                      "channels_last": bool(layout.channels_last), "batch_size": int(layout.batch_size)},
             "final_accuracy": released.final_rows}
    atomic_torch_save(model, path, RESUME, sealed=True)


def load_model(path: str | Path) -> dict:
    """The model file, verified against its digest; a damaged or foreign file raises ``RunResultError``."""
    path = Path(path)
    content = read_result(path, f"copy it again from where it was published (with {path.name}.sha256), or "
                                "rerun the run that wrote it")
    try:
        model = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: not a model file of ours
        raise RunResultError(f"{path} is not a loadable model file ({exc})") from None
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise RunResultError(f"{path} is not a {FORMAT} file (see wscl/run/release.py for the format)")
    if model["format_version"] > FORMAT_VERSION:
        raise RunResultError(f"{path} has format version {model['format_version']}; this wscl reads up to "
                             f"{FORMAT_VERSION}: install a newer wscl")
    return model


def build_network(model: dict, device: torch.device) -> ResNet18:
    arch = model["architecture"]
    net = ResNet18(arch["n_heads"], in_channels=arch["in_channels"], width=arch["width"])
    net.load_state_dict(model["state_dict"])
    net = net.to(device)
    if model["eval"]["training_channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    return net.eval()


def evaluate(model: dict, dataset_root: str | None = None, device: str = "cpu") -> dict:
    """Accuracy of the saved network on every task's test images of the benchmark it was trained on
    (prepared under ``dataset_root``, else the run's ``dataset.root``): per setting the row, and whether it
    equals the row recorded when the run finished."""
    from wscl.data import benchmarks
    from wscl.method import scenario as scenario_mod
    from wscl.method.feed import ImageSource
    cfg = build([Layer("config file", model["config"], "the model's configuration"),
                 Layer("set", {"dataset": {"root": dataset_root}} if dataset_root else {}, "--dataset-root")])
    device = torch.device(device)
    ds = benchmarks.from_config(cfg)
    scenario = scenario_mod.from_config(ds, cfg)
    norm, layout = model["normalisation"], model["eval"]
    augment = ds.augment if cfg.scenario.augment == "auto" else cfg.scenario.augment
    preprocess = Preprocess(norm["mean"], norm["std"], augment, device, layout["channels_last"], ds.crop_padding)
    tests = TestTasks(ImageSource(ds.test_x, device, ds.memory_mapped), scenario.test_idx, np.asarray(ds.test_y),
                      scenario.task_classes, preprocess, layout["batch_size"])
    class_to_head = np.asarray(model["class_to_head"], dtype=np.int64)
    net = build_network(model, device)
    rows = {s: [] for s in SETTINGS}
    for task in range(scenario.n_tasks):
        for setting, acc in zip(SETTINGS, tests.evaluate(net, task, lambda classes: class_to_head[classes])):
            rows[setting].append(acc)
    recorded = model["final_accuracy"]
    return {"dataset": ds.name, "dataset_sha256": ds.sha256, "device": str(device), "final_accuracy": rows,
            "recorded": recorded, "matches_recorded": all(rows[s] == recorded[s] for s in SETTINGS)}
