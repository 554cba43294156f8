"""Tiny-ImageNet-200 from its official zip: ``wnids.txt`` order defines the classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wscl.data.archives import ArchiveSource
from wscl.data.sources import RawFile

TINY = ArchiveSource(
    raw="tinyimagenet",
    archive=RawFile("tiny-imagenet-200.zip", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                    "90528d7ca1a48142e341f4ef8d21d0de"),
    folder="tiny-imagenet-200",
    required=("wnids.txt", "words.txt", "train", "val/val_annotations.txt"),
)


def read_image(path: Path, size: int | None = None) -> np.ndarray:
    """(C, H, W) uint8 RGB; greyscale images are converted, as torchvision's loaders do."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def load(folder: Path):
    """Train images per wnid, the official validation split as test set, wnids and their words."""
    wnids = (folder / "wnids.txt").read_text().split()
    words = dict(line.split("\t", 1) for line in (folder / "words.txt").read_text().splitlines() if "\t" in line)
    index = {w: i for i, w in enumerate(wnids)}
    train_x, train_y = [], []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        train_x += [read_image(f, 64) for f in files]
        train_y += [index[wnid]] * len(files)
    test_x, test_y = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        test_x.append(read_image(folder / "val" / "images" / name, 64))
        test_y.append(index[wnid])
    stack = lambda xs: np.stack(xs) if xs else np.zeros((0, 3, 64, 64), np.uint8)  # noqa: E731
    return (stack(train_x), np.asarray(train_y, np.int64), stack(test_x), np.asarray(test_y, np.int64), wnids,
            [words.get(w, w).strip() for w in wnids])
