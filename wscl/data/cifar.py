"""CIFAR-10 and CIFAR-100 from the official python archives (pickled batches, rows in channel planes)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from wscl.data.archives import ArchiveSource
from wscl.data.sources import RawFile

CIFAR10 = ArchiveSource(
    raw="cifar10",
    archive=RawFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "c58f30108f718f92721af3b95e74349a"),
    folder="cifar-10-batches-py",
    file_md5={"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
              "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
              "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
              "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
    required=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
              "batches.meta"),
)
CIFAR100 = ArchiveSource(
    raw="cifar100",
    archive=RawFile("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                    "eb9058c3a382ffc7106e4002c42a8d85"),
    folder="cifar-100-python",
    file_md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
              "meta": "7973b15100ade9c7d40fb424638fde48"},
    required=("train", "test", "meta"),
)

# The 8 CIFAR-100 superclasses that resemble CIFAR-10 classes [code]; the other 12 are dream candidates.
EXCLUDED_SUPERCLASSES = ("large_carnivores", "large_omnivores_and_herbivores", "medium_mammals",
                         "non-insect_invertebrates", "reptiles", "small_mammals", "vehicles_1", "vehicles_2")


def _unpickle(path: Path) -> dict:
    """The official batches are Python 2 pickles: load with latin1 (as torchvision does), str keys."""
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _images(rows) -> np.ndarray:
    # Each row: 1024 red, then 1024 green, then 1024 blue values, row-major: already (C, H, W).
    return np.asarray(rows, dtype=np.uint8).reshape(-1, 3, 32, 32)


def load_cifar10(folder: Path):
    batches = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(folder / "test_batch")
    names = _unpickle(folder / "batches.meta")["label_names"]
    train_x = np.concatenate([_images(b["data"]) for b in batches])
    train_y = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
    return train_x, train_y, _images(test["data"]), np.asarray(test["labels"], dtype=np.int64), list(names)


def load_cifar100(folder: Path):
    """Train and test images with fine and coarse labels, and both name lists."""
    meta = _unpickle(folder / "meta")
    out = {}
    for split in ("train", "test"):
        entry = _unpickle(folder / split)
        out[split] = (_images(entry["data"]), np.asarray(entry["fine_labels"], dtype=np.int64),
                      np.asarray(entry["coarse_labels"], dtype=np.int64))
    return out, list(meta["fine_label_names"]), list(meta["coarse_label_names"])
