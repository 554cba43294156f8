"""The canonical dataset format that training reads: its arrays, metadata, saving and loading
(the folder layout and its digest: `layout.py`).

Images are stored channel-first so that a batch gathered by index is ready for the network.
Large datasets are opened memory-mapped (``numpy.load(mmap_mode="r")``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wscl.core.errors import DatasetError
from wscl.data.layout import ARRAYS, FORMAT_VERSION, array_dtype, digests, fields_digest, meta_digests


@dataclass
class CanonicalDataset:
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    dream_x: np.ndarray
    dream_y: np.ndarray
    dream_classes: list[str]
    augment: bool = False
    crop_padding: int = 4            # [code] zero padding of the random crop, in pixels (Mammoth's CIFAR and Tiny)
    source: str = ""
    checksums_verified: bool = True
    mean: list[float] | None = None  # [code] fixed per-benchmark normalisation; None: the training images' own
    std: list[float] | None = None
    sha256: str | None = None        # content digest (layout.py), of generated data too
    extra: dict = field(default_factory=dict)  # further metadata for meta.json (e.g. WordNet ids)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.train_x.shape[1:])

    @property
    def memory_mapped(self) -> bool:
        """Whether the images stay on disk (gathered per batch on the host)."""
        return isinstance(self.train_x, np.memmap)

    def normalisation(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std the network's inputs are normalised with."""
        if self.mean is not None:
            return list(self.mean), list(self.std)
        return self.channel_stats()

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images on the [0, 1] scale (sampled when large)."""
        x = self.train_x
        if len(x) > 5000:
            x = x[np.linspace(0, len(x) - 1, 5000).astype(int)]
        x = np.asarray(x, dtype=np.float64) / 255.0
        mean = x.mean(axis=(0, 2, 3))
        std = x.std(axis=(0, 2, 3)) + 1e-8
        return mean.tolist(), std.tolist()

    def metadata(self) -> dict:
        mean, std = self.normalisation()
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "image_shape": list(self.image_shape),
            "channels": self.image_shape[0],
            "classes": list(self.classes),
            "dream_classes": list(self.dream_classes),
            "n_train": int(len(self.train_y)),
            "n_test": int(len(self.test_y)),
            "n_dream": int(len(self.dream_y)),
            "augment": bool(self.augment),
            "mean": mean,
            "std": std,
            "source": self.source,
            "checksums_verified": bool(self.checksums_verified),
            **self.extra,
        }


def _validate(ds: CanonicalDataset) -> None:
    for split in ("train", "test", "dream"):
        x, y = getattr(ds, f"{split}_x"), getattr(ds, f"{split}_y")
        if x.dtype != np.uint8 or (len(x) and x.ndim != 4):
            raise DatasetError(f"{ds.name}: {split}_x must be uint8 (N, C, H, W), got {x.dtype} {x.shape}")
        if len(x) != len(y):
            raise DatasetError(f"{ds.name}: {split}_x has {len(x)} images but {split}_y {len(y)} labels")
    if len(ds.train_y) and ds.train_y.max() >= len(ds.classes):
        raise DatasetError(f"{ds.name}: a train label exceeds the {len(ds.classes)} class names")


def save(ds: CanonicalDataset, folder: str | Path) -> Path:
    """Write atomically: into a temporary sibling folder, then rename into place."""
    from wscl.core.safe_io import atomic_save_npy
    _validate(ds)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name in ARRAYS:
            arr = getattr(ds, name)
            atomic_save_npy(tmp / f"{name}.npy", np.ascontiguousarray(arr, dtype=array_dtype(name)))
        meta = ds.metadata()
        # sha256 of the whole content (and of each array, to name a damaged one) and of meta.json's fields
        meta.update(meta_digests(tmp, meta))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load(folder: str | Path, mmap_above_mb: float = 2048, verify: bool = False) -> CanonicalDataset:
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{folder} is not a prepared dataset (no meta.json); "
                           f"prepare it with `python -m wscl data prepare {folder.name} --root {folder.parent}`")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{folder}: format version {meta.get('format_version')} in meta.json, this code reads "
                           f"version {FORMAT_VERSION}; prepare the dataset again")
    missing = [n for n in ARRAYS if not (folder / f"{n}.npy").is_file()]
    if missing:
        raise DatasetError(f"{folder}: missing {', '.join(missing)}.npy; prepare the dataset again")
    if verify and digests(folder)[0] != meta.get("sha256"):
        raise DatasetError(f"{folder}: content does not match the sha256 in meta.json; prepare the dataset again")
    if verify and meta.get("fields_sha256") and fields_digest(meta) != meta["fields_sha256"]:
        raise DatasetError(f"{meta_path}: its fields do not match its fields_sha256; prepare the dataset again")
    size_mb = sum((folder / f"{n}.npy").stat().st_size for n in ARRAYS) / 2**20
    mode = "r" if size_mb > mmap_above_mb else None
    arrays = {n: np.load(folder / f"{n}.npy", mmap_mode=mode) for n in ARRAYS}
    known = {"format_version", "name", "image_shape", "channels", "classes", "dream_classes", "n_train",
             "n_test", "n_dream", "augment", "source", "checksums_verified", "sha256", "mean", "std",
             "files_sha256", "fields_sha256"}
    # The trainer normalises with the stored mean/std (the authors' constants where they have them).
    return CanonicalDataset(name=meta["name"], classes=meta["classes"], dream_classes=meta["dream_classes"],
                            augment=meta["augment"], source=meta.get("source", ""),
                            checksums_verified=meta.get("checksums_verified", True), mean=meta.get("mean"),
                            std=meta.get("std"), sha256=meta.get("sha256"),
                            extra={k: v for k, v in meta.items() if k not in known}, **arrays)
