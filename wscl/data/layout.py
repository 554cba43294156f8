"""The on-disk layout of a prepared dataset and the digest of its content.

A prepared dataset is one folder::

    NAME/
      meta.json                       name, image shape, classes, dream classes, source, checksums
      train_x.npy  train_y.npy        uint8 images (N, C, H, W) and int64 labels
      test_x.npy   test_y.npy
      dream_x.npy  dream_y.npy        auxiliary ("dream") set, classes disjoint from the primary ones

The content digest is the SHA-256 over the arrays' ``.npy`` files in this order; data generated in memory
gets the digest its prepared folder would have.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

ARRAYS = ("train_x", "train_y", "test_x", "test_y", "dream_x", "dream_y")
FORMAT_VERSION = 1
META = "meta.json"
CHUNK = 1 << 22


def array_dtype(name: str):
    return np.uint8 if name.endswith("_x") else np.int64


def digests(folder: str | Path) -> tuple[str, dict[str, str]]:
    """(content SHA-256 over every array in format order, as meta.json's ``sha256``; per-file SHA-256)."""
    folder = Path(folder)
    whole, per_file = hashlib.sha256(), {}
    for name in ARRAYS:
        one = hashlib.sha256()
        with open(folder / f"{name}.npy", "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                whole.update(chunk)
                one.update(chunk)
        per_file[f"{name}.npy"] = one.hexdigest()
    return whole.hexdigest(), per_file


def meta_digests(folder: str | Path) -> dict:
    """What canonical.save records in meta.json: ``sha256`` and ``files_sha256``."""
    whole, per_file = digests(folder)
    return {"sha256": whole, "files_sha256": per_file}


def in_memory_digest(arrays: dict[str, np.ndarray]) -> str:
    """The content SHA-256 of arrays not written to disk: that of the ``.npy`` files ``save`` would write."""
    whole = hashlib.sha256()
    for name in ARRAYS:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(arrays[name], dtype=array_dtype(name)))
        whole.update(buffer.getvalue())
    return whole.hexdigest()
