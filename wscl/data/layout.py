"""The on-disk layout of a prepared dataset and the digest of its content.

A prepared dataset is one folder::

    NAME/
      meta.json                       name, image shape, classes, dream classes, source, checksums
      train_x.npy  train_y.npy        uint8 images (N, C, H, W) and int64 labels
      test_x.npy   test_y.npy
      dream_x.npy  dream_y.npy        auxiliary ("dream") set, classes disjoint from the primary ones

The content digest is the SHA-256 over the arrays' ``.npy`` files in this order; data generated in memory
gets the digest its prepared folder would have. meta.json's own fields (normalisation, augmentation, classes,
...) change what a run computes as much as the arrays do: ``fields_sha256`` seals them, every field but the
digests, as canonical JSON.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

ARRAYS = ("train_x", "train_y", "test_x", "test_y", "dream_x", "dream_y")
FORMAT_VERSION = 1
META = "meta.json"
CHUNK = 1 << 22
DIGEST_FIELDS = ("sha256", "files_sha256", "fields_sha256")


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


def fields_digest(meta: dict) -> str:
    """The SHA-256 of meta.json's fields other than its digests (key order and layout do not count)."""
    fields = {key: value for key, value in meta.items() if key not in DIGEST_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def meta_digests(folder: str | Path, meta: dict) -> dict:
    """What canonical.save records in meta.json beside ``meta``: ``sha256``, ``files_sha256`` and
    ``fields_sha256``."""
    whole, per_file = digests(folder)
    return {"sha256": whole, "files_sha256": per_file, "fields_sha256": fields_digest(meta)}


def in_memory_digest(arrays: dict[str, np.ndarray]) -> str:
    """The content SHA-256 of arrays not written to disk: that of the ``.npy`` files ``save`` would write."""
    whole = hashlib.sha256()
    for name in ARRAYS:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(arrays[name], dtype=array_dtype(name)))
        whole.update(buffer.getvalue())
    return whole.hexdigest()
