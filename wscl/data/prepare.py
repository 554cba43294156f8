"""``wscl data prepare NAME``: raw files -> a benchmark in the canonical format; ``wscl data list``, ``wscl data info``.

Raw files are kept under ``ROOT/raw/RAW`` (RAW = the raw dataset's name); the benchmark is written
to ``ROOT/NAME``. Each benchmark's declaration (wscl/data/benchmarks/) states which raw datasets it needs
and how its builder maps them.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wscl.core.safe_io import translated
from wscl.data import benchmarks
from wscl.data import canonical as data
from wscl.data.declaration import Context


def prepare(name: str, root: str | Path, mirrors: dict[str, list[Path]] | None = None, verify: bool = True,
            log: Callable[[str], None] = print) -> Path:
    ctx = Context(Path(root), mirrors or {}, verify, log, benchmarks.get(name))
    # Raw files, extraction and the prepared folder are each written to a temporary name and renamed into
    # place, so a full disk or a read-only folder leaves no half-written benchmark: one line says which file
    # and why, and rerunning resumes (downloads after their last byte, finished raw files kept).
    rerun = f"rerun `wscl data prepare {name} --root {root}`"
    with translated(ctx.root / name, after=rerun):
        ds = ctx.benchmark.build(ctx)
    if ds.name != name:
        raise data.DatasetError(f"the builder of benchmark {name!r} returned a dataset named {ds.name!r}; build it "
                                "with ctx.dataset(...)")
    if not verify:
        log(f"{name}: raw checksums were NOT verified; the metadata records checksums_verified: false")
    scratch = ds.extra.pop("scratch", None)
    with translated(ctx.root / name, after=rerun, name_from_os=False):  # not its temporary sibling
        folder = data.save(ds, ctx.root / name)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"prepared {name}: {len(ds.train_y)} train / {len(ds.test_y)} test images of shape {ds.image_shape}, "
        f"{len(ds.dream_y)} dream images -> {folder}")
    return folder


def listing() -> list[str]:
    """One line per declared benchmark: name, tasks, raw datasets, what it is and its dreams (`wscl data list`)."""
    lines = []
    for b in benchmarks.registry().values():
        augment = "no augmentation" if b.augment is None else "crop+flip"
        norm = "fixed mean/std" if b.mean is not None else "own statistics"
        raw = ", ".join(b.raw) or "generated"
        lines.append(f"{b.name}: {b.n_tasks} tasks x {b.classes_per_task} classes; raw: {raw}; {norm}, {augment}; "
                     f"{b.about}; dreams: {b.dreams}")
    return lines


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
            out[name] = (np.asarray(x[rows], dtype=np.float64).mean(axis=(0, 2, 3)).round(2).tolist()
                         if len(rows) else [])
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
