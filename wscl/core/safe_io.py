"""Writes that either complete or leave nothing behind, and say plainly why they failed.

Every writer here writes to a temporary file beside the target (``.NAME.<unique>.tmp``, a name of its own
per write, so that processes writing the same target at once do not rename each other's file away),
flushes it to disk and renames it into place, so a reader sees the old file or the new one, never half of
one. A writer asked to ``seal`` also writes the content's SHA-256 beside the file (``NAME.sha256``, in
``sha256sum`` format, so ``sha256sum -c`` checks it too), and :func:`read_verified` refuses a file whose
content no longer matches it: a byte changed on disk, of unchanged size, is caught on the next read.
When the write fails the temporary file is removed, and an operating-system failure that a person
must fix (a full disk, an exceeded quota, a read-only or forbidden folder) becomes a :class:`WriteError`
whose message names the file, the cause and what to do; the command line prints it as one line.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import io
import json
import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from wscl.core.errors import OutputError

RERUN = "rerun the same command: finished work is kept"
RESUME = "rerun the same command: the run resumes from its last checkpoint"

# errno -> (the cause in words, what to do about it; {where} = the mount point holding the file)
CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space under {where} and {after}"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space in your quota under {where} and {after}"),
    errno.EFBIG: ("the file is larger than the file system allows", "write to another file system and {after}"),
    errno.EROFS: ("the folder is on a read-only file system",
                  "make {where} writable or choose another output folder, and {after}"),
    errno.EACCES: ("permission to write there is denied",
                   "make the folder writable for this user or choose another output folder, and {after}"),
    errno.EPERM: ("permission to write there is denied",
                  "make the folder writable for this user or choose another output folder, and {after}"),
}
_open = open  # the one opener of this module (a fault-injection test may replace it)


class WriteError(OutputError):
    """A file could not be written for a reason outside the program (disk full, read-only folder, ...)."""

    def __init__(self, path: str | Path, cause: OSError, after: str = RERUN):
        self.path, self.errno, self.os_error = Path(path), cause.errno, cause
        words, todo = CAUSES.get(cause.errno, (cause.strerror or str(cause), "fix the cause and {after}"))
        self.cause = words
        super().__init__(f"cannot write {self.path}: {words}; "
                         + todo.format(where=mount_point(self.path), after=after))


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system that holds ``path`` (its nearest existing folder)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one it was raised from or during (torch.save reports a failed
    write as ``RuntimeError: ... unexpected pos``, with the OSError as its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # e.g. the folder became read-only meanwhile: nothing more can be done here
        pass


STALE_TEMP_S = 3600  # a temporary file this old was left by a writer that was killed (SIGKILL, out of memory)
TEMP_SUFFIX = re.compile(r"\.\d+-[0-9a-f]{8}\.tmp")  # what temp_path adds after ".NAME": keep the two in step


def temp_path(path: str | Path) -> Path:
    """A temporary name beside ``path`` that no other process or write uses: its own until renamed."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def remove_stale_temps(path: str | Path) -> None:
    """Remove the temporary files of ``path`` that killed writers left (older than ``STALE_TEMP_S``); a
    write in progress, here or in another process, is younger and kept."""
    path = Path(path)
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not TEMP_SUFFIX.fullmatch(tmp.name[len(path.name) + 1:]):  # e.g. the temporary of NAME.bak
            continue
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                remove_quietly(tmp)
        except OSError:  # removed meanwhile by another process
            pass


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not every file system syncs folders
        pass
    finally:
        os.close(fd)


@contextmanager
def translated(path: str | Path, after: str = RERUN, name_from_os: bool = True):
    """Turn a disk-full / read-only / permission failure inside the block into a :class:`WriteError` that
    names the file the operating system names (with ``name_from_os``), else ``path``. Other failures pass
    unchanged. A WriteError from an inner writer takes this block's ``after`` (and ``path``, without
    ``name_from_os``): the outer caller knows the command to rerun."""
    try:
        yield
    except WriteError as exc:
        if after == RERUN and name_from_os:
            raise
        raise WriteError(exc.path if name_from_os else path, exc.os_error, after) from exc.__cause__
    except Exception as exc:
        cause = os_error_in(exc)
        if cause is None or cause.errno not in CAUSES:
            raise
        raise WriteError((name_from_os and cause.filename) or path, cause, after) from exc


SEAL_SUFFIX = ".sha256"


class DamagedFile(ValueError):
    """A sealed file whose content differs from its recorded digest, or whose digest is missing."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} {problem}")


def seal_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SEAL_SUFFIX)


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write_seal(path: str | Path, digest: str, after: str = RERUN) -> None:
    """Record ``digest`` as the content of ``path`` (``sha256sum`` format)."""
    atomic_write_text(seal_path(path), f"{digest}  {Path(path).name}\n", after)


def seal(path: str | Path, after: str = RERUN) -> None:
    """Seal a file as it is now (e.g. one another library wrote)."""
    with translated(path, after):
        write_seal(path, sha256_of(Path(path).read_bytes()), after)


def read_verified(path: str | Path) -> bytes:
    """The content of a sealed file, checked against its digest. A missing file raises FileNotFoundError;
    a missing digest or a content that differs from it raises :class:`DamagedFile`."""
    path = Path(path)
    content = path.read_bytes()
    try:
        recorded = seal_path(path).read_text().split()
    except FileNotFoundError:
        raise DamagedFile(path, f"has no digest ({seal_path(path).name} is missing)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedFile(path, f"has an unreadable digest {seal_path(path).name} ({exc})") from None
    if not recorded or recorded[0] != sha256_of(content):
        raise DamagedFile(path, f"differs from its digest in {seal_path(path).name} (changed on disk since it "
                                "was written)")
    return content


def read_result(path: str | Path, fix: str) -> bytes:
    """``read_verified`` for a file an earlier job wrote: missing or damaged, it raises ``RunResultError``
    naming the file and ``fix``."""
    from wscl.core.errors import RunResultError
    try:
        return read_verified(path)
    except FileNotFoundError:
        problem = "is missing"
    except DamagedFile as exc:
        problem = exc.problem
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    raise RunResultError(f"{path} {problem}: {fix}")


def read_json_result(path: str | Path, fix: str, error: type[Exception] | None = None):
    """``read_result`` parsed as JSON; not JSON, it raises ``error`` (default ``RunResultError``) naming the file
    and ``fix``."""
    from wscl.core.errors import RunResultError
    content = read_result(path, fix)
    try:
        return json.loads(content)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise (error or RunResultError)(f"{path} is not valid JSON ({exc}): {fix}") from None


def move_seal_with(path: Path, target: Path) -> None:
    """Rename ``path``'s digest along with the file that was renamed to ``target``."""
    try:
        os.replace(seal_path(path), seal_path(target))
    except FileNotFoundError:
        pass


class _Hashing:
    """A file object that hashes what is written through it."""

    def __init__(self, fh):
        self._fh, self.sha256 = fh, hashlib.sha256()

    def write(self, data):
        self.sha256.update(data.encode("utf-8") if isinstance(data, str) else data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)


@contextmanager
def atomic_writer(path: str | Path, mode: str = "wb", after: str = RERUN, sealed: bool = False):
    """A file object open on a fresh temporary name beside ``path``; on a clean exit it is synced and renamed
    to ``path``, on any failure removed. Text modes write UTF-8. ``sealed``: the digest of what was written
    is renamed into place first, then the file (a crash between the two leaves a mismatch, read as damage)."""
    path = Path(path)
    tmp = temp_path(path)
    with translated(path, after, name_from_os=False):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        try:
            kwargs = {} if "b" in mode else {"encoding": "utf-8"}
            with _open(tmp, mode.replace("w", "x"), **kwargs) as fh:  # "x": never another writer's file
                hashing = _Hashing(fh)
                yield hashing if sealed else fh
                fh.flush()
                os.fsync(fh.fileno())
            if sealed:
                write_seal(path, hashing.sha256.hexdigest(), after)
            os.replace(tmp, path)
        except BaseException:
            remove_quietly(tmp)
            raise
        _sync_folder(path.parent)


def atomic_write_text(path: str | Path, text: str, after: str = RERUN, sealed: bool = False) -> None:
    with atomic_writer(path, "w", after, sealed) as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj, after: str = RERUN, sealed: bool = False) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n", after, sealed)


class _Writes:
    """Only ``write`` of a file: numpy then writes through it in chunks, so a failed write keeps its errno
    (``ndarray.tofile`` on a real file reports a full disk as ``OSError: N requested and M written``)."""

    def __init__(self, fh):
        self.write = fh.write


def atomic_save_npy(path: str | Path, array, after: str = RERUN) -> None:
    import numpy as np
    with atomic_writer(path, "wb", after) as fh:
        np.save(_Writes(fh), array)


def atomic_torch_save(obj, path: str | Path, after: str = RESUME, sealed: bool = False) -> None:
    """``torch.save`` through a file object, so that a full disk surfaces as its OSError (torch's own file
    writer reports only ``unexpected pos``)."""
    import torch
    with atomic_writer(path, "wb", after, sealed) as fh:
        torch.save(obj, fh)


def save_figure(fig, path: str | Path, after: str = RERUN, sealed: bool = False, **savefig) -> None:
    """``fig.savefig`` atomically; the format comes from the file name."""
    savefig.setdefault("format", Path(path).suffix.lstrip(".") or "png")
    with atomic_writer(path, "wb", after, sealed) as fh:
        fig.savefig(fh, **savefig)


def atomic_tar_gz(path: str | Path, members: dict[str, bytes], top: str, mtime: int, after: str = RERUN) -> None:
    """A gzipped tar of ``members`` (name -> content) under the folder ``top``, written atomically."""
    import gzip
    import tarfile
    # gzip's header names the archive itself (not the temporary file) and the given time: the same bytes
    with atomic_writer(path, "wb", after) as fh, \
            gzip.GzipFile(Path(path).name, "wb", fileobj=fh, mtime=mtime) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
