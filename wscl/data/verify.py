"""Check a prepared dataset against the content SHA-256 in its meta.json before a run trains on it.

Small datasets (those loaded into memory, at most ``dataset.mmap_above_mb``) are hashed at every job start:
a fraction of a second for the CIFAR-sized benchmarks. Memory-mapped large ones are hashed once per
prepared folder; the result is kept in ``.verified.json`` together with the size and modification time
of every file, and is trusted only while none of them changed.

A mismatch stops the run with the damaged file named and the command that rebuilds the dataset.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from wscl.core.errors import DatasetError
from wscl.data.layout import ARRAYS, META, digests, fields_digest

RECORD = ".verified.json"


def rebuild_hint(folder: Path) -> str:
    return f"rebuild it with `wscl data prepare {folder.name} --root {folder.parent}`"


def file_stats(folder: Path) -> dict[str, list[int]]:
    """Size and modification time (ns) of meta.json and every array."""
    out = {}
    for name in (META, *(f"{a}.npy" for a in ARRAYS)):
        st = (folder / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _record_valid(folder: Path, expected: str) -> bool:
    try:
        record = json.loads((folder / RECORD).read_text())
        return record.get("sha256") == expected and record.get("files") == file_stats(folder)
    except (OSError, ValueError, AttributeError):
        return False


def _mismatch(folder: Path, meta: dict, per_file: dict[str, str]) -> str:
    expected = meta.get("files_sha256") or {}
    bad = [name for name, digest in per_file.items() if name in expected and expected[name] != digest]
    what = ", ".join(str(folder / name) for name in bad) if bad else \
        f"the arrays of {folder} ({', '.join(per_file)})"
    verb = "does" if len(bad) == 1 else "do"
    return (f"{what} {verb} not match the content sha256 in {folder / META}: the prepared data was changed or "
            f"damaged after preparation; {rebuild_hint(folder)}")


def check_fields(folder: Path, meta: dict, log: Callable[[str], None]) -> None:
    """meta.json's fields (normalisation, augmentation, classes, ...) against its ``fields_sha256``."""
    if not meta.get("fields_sha256"):
        log(f"{folder / META} records no fields_sha256; its normalisation and augmentation fields are used "
            f"unverified ({rebuild_hint(folder)} to record one)")
    elif fields_digest(meta) != meta["fields_sha256"]:
        raise DatasetError(f"the fields of {folder / META} (normalisation, augmentation, classes, ...) do not match "
                           f"its fields_sha256: meta.json was changed after preparation; {rebuild_hint(folder)}")


def verify_prepared(folder: str | Path, mmap_above_mb: float = 2048,
                    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> str | None:
    """Check a prepared folder's arrays against its meta.json; return the verified content SHA-256.

    Returns None for a dataset prepared before meta.json recorded a digest (nothing to check against)."""
    from wscl.core.safe_io import WriteError, atomic_write_json
    folder = Path(folder)
    if not (folder / META).is_file():
        raise DatasetError(f"{folder} is not a prepared dataset (no meta.json); {rebuild_hint(folder)}")
    missing = [f"{a}.npy" for a in ARRAYS if not (folder / f"{a}.npy").is_file()]
    if missing:
        raise DatasetError(f"{folder}: missing {', '.join(missing)}; {rebuild_hint(folder)}")
    try:
        meta = json.loads((folder / META).read_text())
    except ValueError as exc:
        raise DatasetError(f"{folder / META} is not valid JSON ({exc}); {rebuild_hint(folder)}") from None
    check_fields(folder, meta, log)
    expected = meta.get("sha256")
    if not expected:
        log(f"{folder}: meta.json records no content sha256; the data is used unverified ({rebuild_hint(folder)} "
            "to record one)")
        return None
    size_mb = sum((folder / f"{a}.npy").stat().st_size for a in ARRAYS) / 2**20
    large = size_mb > mmap_above_mb
    if large and _record_valid(folder, expected):
        return expected
    if large:
        log(f"{folder}: verifying {size_mb:.0f} MB against meta.json (once; recorded in {RECORD})")
    stats = file_stats(folder) if large else None
    whole, per_file = digests(folder)
    if whole != expected:
        raise DatasetError(_mismatch(folder, meta, per_file))
    if large:
        try:
            atomic_write_json(folder / RECORD, {"sha256": whole, "files_sha256": per_file, "files": stats})
        except WriteError as exc:  # e.g. a shared read-only data folder: verified now, again next time
            log(f"{exc.path}: not recorded ({exc.cause}); the next run verifies {folder} again")
    return whole
