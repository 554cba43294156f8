"""``wscl data prepare NAME``: raw files -> a benchmark in the canonical format; ``wscl data info``.

Raw files are kept under ``ROOT/raw/RAW`` (RAW = the raw dataset's name); the benchmark is written
to ``ROOT/NAME``. Each builder below states which raw datasets it needs and how it maps them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import data
from . import fashion_mnist
from .images import resize
from .sources import RawFile, fetch


@dataclass
class Context:
    root: Path
    mirrors: dict[str, list[Path]] = field(default_factory=dict)
    verify: bool = True
    log: Callable[[str], None] = print

    def raw_dir(self, raw: str) -> Path:
        return self.root / "raw" / raw

    def fetch_all(self, raw: str, files: list[RawFile], default_mirrors: list[Path] = ()) -> dict[str, Path]:
        mirrors = self.mirrors.get(raw, []) + [m for m in default_mirrors if Path(m).is_dir()]
        return {f.name: fetch(f, self.raw_dir(raw), mirrors, self.verify, self.log) for f in files}


def build_seq_fashion_mnist(ctx: Context) -> data.CanonicalDataset:
    """Fashion-MNIST 28x28x1 (5 tasks x 2 classes) with scikit-learn digits, resized to 28x28, as dreams."""
    paths = ctx.fetch_all("fashion-mnist", fashion_mnist.FILES, fashion_mnist.DEFAULT_MIRRORS)
    train_x, train_y, test_x, test_y = fashion_mnist.load(paths)
    dream_x, dream_y, dream_classes = fashion_mnist.digits()
    return data.CanonicalDataset(
        name="seq-fashion-mnist", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        classes=fashion_mnist.CLASSES, dream_x=resize(dream_x, 28), dream_y=dream_y, dream_classes=dream_classes,
        augment=False, source="Fashion-MNIST (official IDX files); dreams: scikit-learn digits resized to 28x28",
        checksums_verified=ctx.verify)


def build_synthetic(ctx: Context) -> data.CanonicalDataset:
    """The seeded synthetic set with the trainer's default sizes (for trying the format)."""
    return data.synthetic()


BUILDERS: dict[str, Callable[[Context], data.CanonicalDataset]] = {
    "seq-fashion-mnist": build_seq_fashion_mnist,
    "synthetic": build_synthetic,
}


def prepare(name: str, root: str | Path, mirrors: dict[str, list[Path]] | None = None, verify: bool = True,
            log: Callable[[str], None] = print) -> Path:
    if name not in BUILDERS:
        raise data.DatasetError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BUILDERS))}")
    ctx = Context(Path(root), mirrors or {}, verify, log)
    ds = BUILDERS[name](ctx)
    folder = data.save(ds, ctx.root / name)
    log(f"prepared {name}: {len(ds.train_y)} train / {len(ds.test_y)} test images of shape {ds.image_shape}, "
        f"{len(ds.dream_y)} dream images -> {folder}")
    return folder


def info(folder: str | Path) -> dict:
    ds = data.load(folder, mmap_above_mb=0)
    meta = json.loads((Path(folder) / "meta.json").read_text())

    def per_class(labels: np.ndarray, names: list[str]) -> dict[str, int]:
        counts = np.bincount(np.asarray(labels), minlength=len(names))
        return {names[i]: int(c) for i, c in enumerate(counts)}

    def channel_means(x: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, list[float]]:
        y = np.asarray(y)
        out = {}
        for c, name in enumerate(names):
            rows = np.flatnonzero(y == c)[:500]
            out[name] = np.asarray(x[rows], dtype=np.float64).mean(axis=(0, 2, 3)).round(2).tolist() if len(rows) else []
        return out

    return {
        "name": meta["name"], "image_shape": meta["image_shape"], "channels": meta["channels"],
        "classes": meta["classes"], "train_per_class": per_class(ds.train_y, ds.classes),
        "test_per_class": per_class(ds.test_y, ds.classes), "dream_classes": meta["dream_classes"],
        "dream_per_class": per_class(ds.dream_y, ds.dream_classes),
        "mean_pixel_per_channel": channel_means(ds.train_x, ds.train_y, ds.classes),
        "dream_mean_pixel_per_channel": channel_means(ds.dream_x, ds.dream_y, ds.dream_classes),
        "source": meta["source"], "checksums_verified": meta["checksums_verified"], "sha256": meta.get("sha256"),
    }
