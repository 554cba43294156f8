"""What a run loads cannot run code, and what a prepared dataset says about itself is sealed: a checkpoint
holding anything outside its allow-list is refused (and moved aside), and an edited meta.json field stops the
run like an edited array."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wscl.core.errors import DatasetError
from wscl.core.safe_io import RESUME, atomic_torch_save
from wscl.data.canonical import load, save
from wscl.data.synthetic import synthetic
from wscl.data.verify import verify_prepared
from wscl.run import checkpoint


class Planted:
    """An object whose unpickling would create a file: what a replaced checkpoint could carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class NoState:
    """A run state that a refused checkpoint must never reach."""

    def field_names(self):
        raise AssertionError("a refused checkpoint reached the run state")


def test_a_checkpoint_with_numpy_arrays_loads_with_weights_only():
    payload = {"fingerprint": "f", "position": None,
               "state": {"rows": np.arange(5), "taken": np.zeros(3, dtype=bool), "x": np.ones(2, np.float32),
                         "rng": np.random.default_rng(0).bit_generator.state, "w": torch.ones(2)}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    loaded = checkpoint.load_payload(buffer.getvalue(), torch.device("cpu"))
    assert np.array_equal(loaded["state"]["rows"], np.arange(5)) and loaded["state"]["taken"].dtype == bool
    assert loaded["state"]["rng"] == payload["state"]["rng"] and torch.equal(loaded["state"]["w"], torch.ones(2))


def test_a_sealed_checkpoint_carrying_another_object_is_refused_and_runs_nothing(tmp_path):
    marker, path = tmp_path / "planted", tmp_path / checkpoint.FILE_NAME
    atomic_torch_save({"fingerprint": "f", "state": {"x": Planted(marker)}, "position": None}, path, RESUME,
                      sealed=True)
    lines = []
    assert checkpoint.restore(NoState(), path, "f", torch.device("cpu"), log=lines.append) is None
    assert not marker.exists() and not path.exists()
    assert "cannot be read" in lines[0] and "moved aside" in lines[0]


def prepared(tmp_path) -> Path:
    return save(synthetic(classes=2, dream_classes=2, train_per_class=5, test_per_class=2, dream_per_class=2,
                          size=9), tmp_path / "syn")


EDITS = {"mean": lambda v: [m + 0.1 for m in v], "std": lambda v: [9.0] * len(v), "augment": lambda v: not v,
         "classes": lambda v: v[::-1]}


@pytest.mark.parametrize("field", EDITS)
def test_an_edited_meta_json_field_is_caught(tmp_path, field):
    folder = prepared(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    assert verify_prepared(folder, log=lambda msg: None) == meta["sha256"]
    value = EDITS[field](meta[field])
    assert meta[field] != value
    (folder / "meta.json").write_text(json.dumps({**meta, field: value}, indent=4))
    with pytest.raises(DatasetError, match=r"meta.json \(normalisation, augmentation, classes, \.\.\.\) do not match"):
        verify_prepared(folder, log=lambda msg: None)
    with pytest.raises(DatasetError, match="fields do not match its fields_sha256"):
        load(folder, verify=True)


def test_meta_json_rewritten_with_the_same_fields_still_verifies(tmp_path):
    folder = prepared(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(dict(reversed(list(meta.items())))))
    assert verify_prepared(folder, log=lambda msg: None) == meta["sha256"]


def test_a_dataset_prepared_without_the_fields_digest_says_so(tmp_path):
    folder = prepared(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["fields_sha256"]
    (folder / "meta.json").write_text(json.dumps(meta))
    lines = []
    assert verify_prepared(folder, log=lines.append) == meta["sha256"]
    assert len(lines) == 1 and "records no fields_sha256" in lines[0] and "wscl data prepare syn" in lines[0]
