"""A small file system for fault-injection tests: a real tmpfs (CI runs as root), which can be resized and
made read-only; where mounting is refused, a simulation of the same (writes under the folder fail with
ENOSPC past the size, or EROFS when read-only). WSCL_SIMULATE_DISK=1 forces the simulation."""
from __future__ import annotations

import builtins
import errno
import os
import subprocess
from pathlib import Path


def _mount(*args: str) -> bool:
    try:
        return subprocess.run(["mount", *args], capture_output=True).returncode == 0
    except OSError:
        return False


class Disk:
    """``path``: the folder; ``resize(kb)``; ``read_only(flag)``; ``real``: a tmpfs, not the simulation."""

    def __init__(self, path: Path, kb: int, monkeypatch):
        self.path, self.kb = path, kb
        self.ro = False
        path.mkdir(parents=True, exist_ok=True)
        self.real = os.environ.get("WSCL_SIMULATE_DISK") != "1" and _mount("-t", "tmpfs", "-o", f"size={kb}k",
                                                                          "tmpfs", str(path))
        if not self.real:
            self._simulate(monkeypatch)

    def resize(self, kb: int) -> None:
        self.kb = kb
        if self.real:
            assert _mount("-o", f"remount,size={kb}k", str(self.path))

    def read_only(self, flag: bool = True) -> None:
        self.ro = flag
        if self.real:
            assert _mount("-o", f"remount,{'ro' if flag else 'rw'}", str(self.path))

    def fill(self, leave_kb: int) -> Path:
        """A file that leaves about ``leave_kb`` free."""
        filler = self.path / "filler"
        size = self.kb * 1024 - self.used() - leave_kb * 1024
        with open(filler, "wb") as fh:
            fh.write(b"\0" * max(size, 0))
        return filler

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    # -- the simulation ------------------------------------------------------------------------------
    def _inside(self, file) -> bool:
        try:
            return Path(os.path.abspath(os.fspath(file))).is_relative_to(self.path.resolve())
        except TypeError:  # a file descriptor
            return False

    def _simulate(self, monkeypatch) -> None:
        real_open, real_mkdir, disk = builtins.open, os.mkdir, self

        class Limited:
            def __init__(self, fh, name):
                self._fh, self._name, self._written = fh, Path(os.path.abspath(name)), 0

            def write(self, data):
                others = sum(p.stat().st_size for p in disk.path.rglob("*") if p.is_file() and p != self._name)
                if others + self._written + len(data) > disk.kb * 1024:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._name))
                self._written += len(data)
                return self._fh.write(data)

            def __getattr__(self, name):
                return getattr(self._fh, name)

            def __iter__(self):
                return iter(self._fh)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._fh.close()
                return False

        def fake_open(file, mode="r", *args, **kwargs):
            writing = any(c in mode for c in "wax+")
            if writing and self._inside(file):
                if disk.ro:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
                return Limited(real_open(file, mode, *args, **kwargs), file)
            return real_open(file, mode, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if disk.ro and self._inside(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        import wscl.core.safe_io
        monkeypatch.setattr(wscl.core.safe_io, "_open", fake_open)


def flip_middle_bytes(path: Path, n: int = 64) -> None:
    """What a failing disk does: ``n`` bytes in the middle of the file changed, its size unchanged."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = bytes(b ^ 0xFF for b in data[middle:middle + n])
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size
