"""A benchmark is one declaration: one file in wscl/data/benchmarks/ gives `wscl data prepare`, the prepared
folder's normalisation and augmentation, a run's crop padding and a study's task structure."""
import json
import sys

import numpy as np
import pytest

from wscl.cli import main
from wscl.core.errors import DatasetError
from wscl.data import benchmarks
from wscl.data.canonical import load
from wscl.data.prepare import prepare
from wscl.run.trainer import Run
from wscl.study.studies import RunKey, Study

quiet = lambda *_: None  # noqa: E731

# A user's new benchmark, whole: its raw file (one .npz, HWC images), the builder that maps it to the canonical
# arrays, its task structure, augmentation and dream set, and the writer of its small fake.
TOY = '''
"""Toy colours: 4 colour classes of 12x12 RGB images in 2 tasks of 2; dreams: 2 colour classes of their own."""
from pathlib import Path

import numpy as np

from wscl.data.declaration import Benchmark, CropFlip
from wscl.data.sources import RawFile

FILES = [RawFile("colours.npz", url=None)]  # no download: a mirror holds it


def build(ctx):
    with np.load(ctx.fetch_all("colours", FILES)["colours.npz"]) as f:
        x, y, test = f["images"].transpose(0, 3, 1, 2), f["labels"].astype(np.int64), f["test"]
    primary, dream = y < 4, y >= 4
    return ctx.dataset(train_x=x[primary & ~test], train_y=y[primary & ~test], test_x=x[primary & test],
                       test_y=y[primary & test], classes=["red", "green", "blue", "grey"], dream_x=x[dream],
                       dream_y=y[dream] - 4, dream_classes=["yellow", "purple"], source="colours.npz")


def fake(where: Path) -> dict:
    rng = np.random.default_rng(0)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128], [200, 200, 40], [160, 40, 160]])
    labels = np.repeat(np.arange(6), 80)
    images = np.clip(colours[labels][:, None, None, :] + rng.normal(0, 40, (len(labels), 12, 12, 3)), 0, 255)
    (where / "colours").mkdir(parents=True)
    np.savez(where / "colours" / "colours.npz", images=images.astype(np.uint8), labels=labels,
             test=np.tile(np.arange(80) >= 60, 6))
    return {"colours": [where / "colours"]}


BENCHMARK = Benchmark(name="toy-colours", n_tasks=2, classes_per_task=2, build=build, fake=fake, raw=("colours",),
                      about="colour classes", dreams="two other colours", augment=CropFlip(padding=2))
'''


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder searched as part of wscl/data/benchmarks/: a file dropped there is a declared benchmark."""
    folder = tmp_path / "declarations"
    folder.mkdir()
    monkeypatch.setattr(benchmarks, "__path__", [*benchmarks.__path__, str(folder)])
    yield folder
    for name in [m for m in sys.modules if m.startswith(f"{benchmarks.__name__}.toy")]:
        del sys.modules[name]


def test_a_new_benchmark_in_one_file_prepares_from_its_fake_and_trains_above_chance(tmp_path, user_folder, tiny):
    (user_folder / "toy_colours.py").write_text(TOY)
    toy = benchmarks.get("toy-colours")
    folder = prepare("toy-colours", tmp_path / "data", toy.fake(tmp_path / "fake"), log=quiet)
    ds = load(folder)
    assert ds.image_shape == (3, 12, 12) and len(ds.train_y) == 4 * 60 and len(ds.dream_y) == 2 * 80
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["augment"] is True and meta["checksums_verified"] is True
    # Both routes apply the declaration: a study's run on it, and `wscl train --dataset` alone.
    sizes = {"model": {"width": 8}, "training": {"epochs": 2, "batch_size": 16, "replay_batch_size": 16},
             "runtime": {"device": "cpu", "progress": False}}
    study = Study({"study": "toy", "seeds": [0], "data": {"root": str(tmp_path / "data")}, "trainer": sizes,
                   "benchmarks": {"toy": {"dataset": "toy-colours", "buffers": [20]}},
                   "grid": [{"methods": ["er_ace"], "presets": ["base"]}]})
    cfg = study.run_config(RunKey("toy", 20, "er_ace", "base", "reference", 0))
    assert (cfg.dataset.name, cfg.scenario.n_tasks, cfg.scenario.classes_per_task) == ("toy-colours", 2, 2)
    run = Run(cfg, tmp_path / "run", quiet=True, log=quiet)
    assert run.dataset.crop_padding == 2  # the declared augmentation reaches the run
    metrics = run.run()
    assert len(metrics["class_il"]["accuracy_matrix"]) == 2
    assert metrics["class_il"]["final_avg_acc"] > 1.5 * 100 / 4 and metrics["task_il"]["final_avg_acc"] > 1.3 * 100 / 2
    alone = tmp_path / "alone"
    assert main(["train", "--dataset", "toy-colours", "--method", "er_ace", "--preset", "base", "--seed", "0",
                     "--config-json", json.dumps({**sizes, "dataset": {"root": str(tmp_path / "data")}}),
                     "--out", str(alone), "--quiet"]) == 0
    trained = json.loads((alone / "metrics.json").read_text())
    assert (trained["config"]["scenario"]["n_tasks"], trained["config"]["scenario"]["classes_per_task"]) == (2, 2)
    assert trained["class_il"] == metrics["class_il"]  # the same run, whichever route built its configuration


def test_a_study_may_override_the_declared_task_structure():
    config = {"study": "s", "seeds": [0], "grid": [{"methods": ["er"], "presets": ["base"]}],
              "benchmarks": {"tiny": {"dataset": "seq-tinyimg-half", "buffers": [200]},
                             "short": {"dataset": "seq-tinyimg-half", "buffers": [200],
                                       "trainer": {"scenario": {"n_tasks": 2}}},
                             "own": {"dataset": "my-prepared-folder", "buffers": [200]}}}
    study = Study(config)
    tasks = {}
    for name in ("tiny", "short", "own"):
        scenario = study.run_config(RunKey(name, 200, "er", "base", "reference", 0)).scenario
        tasks[name] = scenario.n_tasks, scenario.classes_per_task
    assert tasks == {"tiny": (5, 20), "short": (2, 20), "own": (5, 2)}  # own: no module declares it, the defaults


@pytest.mark.parametrize("name", sorted(n for n, b in benchmarks.registry().items() if b.fake))
def test_every_declared_benchmark_prepares_from_its_fake_and_fits_its_task_structure(tmp_path, name):
    declared = benchmarks.get(name)
    mirrors = declared.fake(tmp_path / "fake")
    assert set(mirrors) == set(declared.raw)
    ds = load(prepare(name, tmp_path / "data", mirrors, verify=False, log=quiet), mmap_above_mb=0)
    assert declared.n_tasks * declared.classes_per_task <= len(ds.classes)
    assert set(np.unique(ds.train_y)) == set(range(len(ds.classes))) and len(ds.dream_classes) > 0
    assert ds.augment == (declared.augment is not None)
    assert (ds.mean is None or declared.mean is None) or np.allclose(ds.mean, declared.mean)


def test_a_module_without_a_declaration_is_refused_naming_it(user_folder):
    (user_folder / "toy_empty.py").write_text("X = 1\n")
    with pytest.raises(DatasetError, match=r"toy_empty declares no BENCHMARK"):
        benchmarks.registry()


def test_data_list_names_every_declared_benchmark(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == list(benchmarks.registry())
    assert "seq-fg-imagenet: 20 tasks x 5 classes" in out


def test_an_unknown_benchmark_lists_the_declared_ones(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown benchmark 'seq-cifar11'; choose one of .*seq-cifar10"):
        prepare("seq-cifar11", tmp_path, log=quiet)
