import json

import numpy as np
import pytest

from wscl.core.errors import DatasetError
from wscl.data.canonical import load, save
from wscl.data.synthetic import synthetic


def test_canonical_roundtrip_with_metadata_and_checksum(tmp_path):
    ds = synthetic(classes=4, dream_classes=3, train_per_class=10, test_per_class=5, dream_per_class=4, size=8)
    folder = save(ds, tmp_path / "synthetic")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["image_shape"] == [3, 8, 8] and meta["channels"] == 3
    assert meta["classes"] == ds.classes and meta["dream_classes"] == ds.dream_classes
    assert len(meta["sha256"]) == 64 and meta["source"].startswith("wscl.data.synthetic")
    back = load(folder, verify=True)
    assert np.array_equal(back.train_x, ds.train_x) and np.array_equal(back.dream_y, ds.dream_y)
    mapped = load(folder, mmap_above_mb=0)
    assert isinstance(mapped.train_x, np.memmap) and mapped.memory_mapped


def test_corrupt_or_missing_dataset_is_reported(tmp_path):
    folder = save(synthetic(classes=2, dream_classes=0, train_per_class=5, test_per_class=2, size=8),
                  tmp_path / "syn")
    arr = np.load(folder / "train_x.npy")
    arr[0, 0, 0, 0] ^= 0xFF
    np.save(folder / "train_x.npy", arr)
    with pytest.raises(DatasetError, match="does not match the sha256"):
        load(folder, verify=True)
    (folder / "test_y.npy").unlink()
    with pytest.raises(DatasetError, match="missing test_y.npy"):
        load(folder)
    with pytest.raises(DatasetError, match="wscl data prepare nothing"):
        load(tmp_path / "nothing")


def test_synthetic_is_seeded_and_has_class_structure():
    a = synthetic(classes=5, train_per_class=50, seed=3)
    b = synthetic(classes=5, train_per_class=50, seed=3)
    assert np.array_equal(a.train_x, b.train_x)
    # learnable at the trainer's default noise and contrast: the nearest training-class mean labels most test images
    means = np.stack([a.train_x[a.train_y == c].mean(0) for c in range(5)]).reshape(5, 1, -1)
    distances = ((a.test_x.reshape(1, len(a.test_x), -1).astype(float) - means) ** 2).sum(-1)
    assert (distances.argmin(0) == a.test_y).mean() > 0.6  # chance: 0.2
    assert not np.array_equal(a.dream_x[:10], a.train_x[:10])


def test_synthetic_takes_the_trainers_defaults_and_has_the_digest_of_its_prepared_folder(tmp_path):
    from wscl.data.layout import digests
    from wscl.settings.config import defaults
    ds = synthetic(classes=3, dream_classes=2, train_per_class=4, test_per_class=2, dream_per_class=2, size=8)
    same = synthetic(**{**defaults()["dataset"]["synthetic"], "classes": 3, "dream_classes": 2, "train_per_class": 4,
                        "test_per_class": 2, "dream_per_class": 2, "size": 8})
    assert np.array_equal(ds.train_x, same.train_x) and ds.sha256 == same.sha256
    assert ds.sha256 == digests(save(ds, tmp_path / "syn"))[0] == load(tmp_path / "syn").sha256
    assert synthetic(classes=3, dream_classes=2, train_per_class=4, test_per_class=2, dream_per_class=2, size=8,
                     seed=1).sha256 != ds.sha256
    with pytest.raises(TypeError, match="noize"):
        synthetic(noize=3)


def test_memory_mapped_dataset_trains_to_the_same_numbers(tmp_path):
    from conftest import tiny_config

    from wscl.run.trainer import Run
    cfg = tiny_config(scenario={"n_tasks": 2})
    save(synthetic(**cfg.dataset.synthetic.to_dict()), tmp_path / "data" / "syn")
    results = []
    for mmap_above_mb in (10**6, 0):  # in memory on the device, then memory-mapped and gathered per batch
        on_disk = tiny_config(scenario={"n_tasks": 2},
                              dataset={"name": "syn", "root": str(tmp_path / "data"), "mmap_above_mb": mmap_above_mb})
        run = Run(on_disk, tmp_path / f"run{mmap_above_mb}", quiet=True, log=lambda *_: None)
        assert run.train_source.mapped == (mmap_above_mb == 0)
        results.append(run.run()["class_il"]["accuracy_matrix"])
    assert results[0] == results[1]


def test_stored_normalisation_and_digest_come_back_as_fields(tmp_path):
    ds = synthetic(classes=2, dream_classes=0, train_per_class=5, test_per_class=2, size=8)
    own = ds.normalisation()
    assert own == ds.channel_stats()
    ds.mean, ds.std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]  # fixed constants, as the authors' benchmarks
    back = load(save(ds, tmp_path / "syn"))
    assert back.normalisation() == ([0.5, 0.4, 0.3], [0.2, 0.2, 0.2]) != own
    assert back.sha256 == ds.sha256 and "mean" not in back.extra and "sha256" not in back.extra


def test_a_dataset_of_another_format_version_is_refused(tmp_path):
    folder = save(synthetic(classes=2, dream_classes=0, train_per_class=5, test_per_class=2, size=8), tmp_path / "s")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(DatasetError, match="format version 0"):
        load(folder)
