"""Raw datasets distributed as one archive whose extracted folder is what the loaders read.

``ensure_extracted`` makes ``ROOT/raw/RAW/FOLDER`` present, trying in order: an already extracted
and verified copy, a mirror's extracted layout (verified file by file where official per-file
checksums exist), a mirror's archive, the official download. Extraction goes to a temporary folder
that is renamed into place only when complete.
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wscl.data.sources import ChecksumError, MissingSourceError, RawFile, fetch, md5_of


@dataclass(frozen=True)
class ArchiveSource:
    raw: str                         # raw dataset name (--mirror RAW=PATH)
    archive: RawFile                 # the official archive
    folder: str                      # top folder inside the archive
    file_md5: dict[str, str] = field(default_factory=dict)  # official per-file checksums inside the folder
    required: tuple[str, ...] = ()   # files that must exist in an extracted layout


def _verify_folder(folder: Path, source: ArchiveSource) -> None:
    for name in source.required:
        if not (folder / name).exists():
            raise MissingSourceError(f"{folder}: {name} is missing; "
                                     f"expected the official layout of {source.archive.name}")
    for name, expected in source.file_md5.items():
        seen = md5_of(folder / name)
        if seen != expected:
            raise ChecksumError(f"{folder / name}: checksum mismatch (md5 {seen}, expected {expected}); the file is "
                                "corrupt or not the official one. Fetch it again, or pass --no-verify "
                                "(data.verify_checksums: false) for a custom copy")


def _extract(archive: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest.parent))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        if dest.exists():
            shutil.rmtree(dest)
        (tmp / dest.name).replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_extracted(source: ArchiveSource, raw_dir: Path, mirrors: list[Path], verify: bool,
                     log: Callable[[str], None]) -> Path:
    raw_dir.mkdir(parents=True, exist_ok=True)
    target = raw_dir / source.folder
    if target.is_dir():
        if not verify:
            return target
        try:
            _verify_folder(target, source)
            return target
        except (ChecksumError, MissingSourceError) as exc:
            log(f"{target}: {exc}; fetching again")
            shutil.rmtree(target)
    for mirror in mirrors:
        layout = Path(mirror) / source.folder if (Path(mirror) / source.folder).is_dir() else Path(mirror)
        if all((layout / name).exists() for name in source.required) and source.required:
            if verify:
                if not source.file_md5:
                    raise ChecksumError(
                        f"{layout}: an extracted {source.raw} layout has no official per-file checksums; give the "
                        f"official archive {source.archive.name} instead, or pass --no-verify to accept this copy")
                _verify_folder(layout, source)
            log(f"{source.raw}: copying the extracted layout from mirror {layout}")
            tmp = raw_dir / f".{source.folder}.copy"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(layout, tmp)
            tmp.replace(target)
            return target
    archive = fetch(source.archive, raw_dir, mirrors, verify, log)
    log(f"{source.raw}: extracting {archive.name}")
    _extract(archive, target)
    if verify:
        _verify_folder(target, source)
    return target
