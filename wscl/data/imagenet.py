"""ImageNet (ILSVRC-2012) from a local root: it cannot be downloaded.

Accepted layouts of ROOT (given with --mirror imagenet=ROOT):
  ROOT/train/<wnid>/*.JPEG                  training images, one folder per synset
  ROOT/val/<wnid>/*.JPEG                    validation images in synset folders, or
  ROOT/val/*.JPEG + ROOT/LOC_val_solution.csv   the flat validation folder with its ground truth
                                            (CSV `ImageId,PredictionString`, the wnid first in the string)
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from wscl.data.sources import MissingSourceError
from wscl.data.tinyimagenet import read_image

LAYOUT = ("ROOT/train/<wnid>/*.JPEG, and ROOT/val/<wnid>/*.JPEG or the flat ROOT/val/*.JPEG with "
          "ROOT/LOC_val_solution.csv (ImageId,PredictionString)")


def synsets(which: str) -> list[str]:
    """The ImageNet-100 ``primary`` or ``aux``iliary synsets, in label order (resources/imagenet100_*.yml)."""
    text = resources.files("wscl.data").joinpath(f"resources/imagenet100_{which}.yml").read_text()
    return [wnid for wnid, _ in sorted(yaml.safe_load(text).items(), key=lambda item: item[1])]


def find_root(mirrors: list[Path]) -> Path:
    for root in mirrors:
        if (Path(root) / "train").is_dir():
            return Path(root)
    tried = ", ".join(map(str, mirrors)) or "none given"
    raise MissingSourceError(f"ImageNet (ILSVRC-2012) cannot be downloaded: give a local copy with "
                             f"--mirror imagenet=ROOT (data.mirrors.imagenet in the config) laid out as {LAYOUT}; "
                             f"tried: {tried}")


def split_files(root: Path, split: str, wnids: list[str]) -> dict[str, list[Path]]:
    """Image files per wnid for ``train`` or ``val``."""
    files = {}
    folder = root / split
    if split == "val" and not any((folder / w).is_dir() for w in wnids):
        solution = root / "LOC_val_solution.csv"
        if not solution.is_file():
            raise MissingSourceError(f"{folder} has no synset folders and {solution} is missing; expected {LAYOUT}")
        files = {w: [] for w in wnids}
        with open(solution, newline="") as fh:
            for row in csv.DictReader(fh):
                wnid = row["PredictionString"].split()[0]
                if wnid in files:
                    files[wnid].append(folder / f"{row['ImageId']}.JPEG")
        return {w: sorted(f) for w, f in files.items()}
    for wnid in wnids:
        if not (folder / wnid).is_dir():
            raise MissingSourceError(f"{folder / wnid} is missing (synset {wnid}); expected {LAYOUT}")
        files[wnid] = sorted((folder / wnid).glob("*.JPEG"))
    return files


def load_images(files: dict[str, list[Path]], wnids: list[str], size: int,
                allocate: Callable[[int, tuple], np.ndarray] = lambda n, shape: np.empty((n, *shape), np.uint8)):
    """Images of ``wnids`` (label = position in ``wnids``) resized to size x size, written into ``allocate``d
    storage (a memory map for large sets)."""
    total = sum(len(files[w]) for w in wnids)
    images = allocate(total, (3, size, size))
    labels = np.empty(total, dtype=np.int64)
    i = 0
    for label, wnid in enumerate(wnids):
        for path in files[wnid]:
            images[i] = read_image(path, size)
            labels[i] = label
            i += 1
    return images, labels
