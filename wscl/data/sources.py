"""Raw dataset files: local mirrors first, then the official download; checksummed before use.

A download goes to ``NAME.part`` and resumes from there with an HTTP Range request when interrupted;
only a file whose checksum matches is moved to its final name. A file that fails its checksum is
removed, and the error names it with both checksums.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wscl.core.errors import DatasetError


class ChecksumError(DatasetError):
    pass


class MissingSourceError(DatasetError):
    pass


@dataclass(frozen=True)
class RawFile:
    name: str                      # file name in the official layout
    url: str | None                # official download URL (None: cannot be downloaded)
    md5: str | None = None         # official checksum of the file as distributed
    content_md5: str | None = None  # checksum of the gunzipped content (a recompressing mirror is still official)


def md5_of(path: Path, gunzip: bool = False) -> str:
    digest = hashlib.md5()
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_matches(path: Path, raw: RawFile) -> tuple[bool, str]:
    """Whether ``path`` is the official file; returns the checksum seen, for the error message."""
    seen = md5_of(path)
    if raw.md5 is None or seen == raw.md5:
        return True, seen
    if raw.content_md5 and raw.name.endswith(".gz"):
        try:
            content = md5_of(path, gunzip=True)
        except (OSError, EOFError):
            return False, seen
        return content == raw.content_md5, f"{seen} (content {content})"
    return False, seen


def download(url: str, part: Path, log: Callable[[str], None], chunk: int = 1 << 20) -> None:
    """Download to ``part``, resuming after the bytes already there."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have and response.status == 206
            if have and not resumed:
                log(f"{url}: server ignored the resume request; downloading from the start")
            elif resumed:
                log(f"{url}: resuming after {have} bytes")
            expected = response.headers.get("Content-Length")
            with open(part, "ab" if resumed else "wb") as out:
                start = out.tell()
                shutil.copyfileobj(response, out, chunk)
                received = out.tell() - start
            if expected is not None and received < int(expected):
                raise OSError(f"connection closed after {received} of {expected} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part is complete
            return
        raise DatasetError(f"download of {url} failed: HTTP {exc.code}; retry, or give a local mirror "
                           "with --mirror RAW=PATH (data.mirrors in the config)") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DatasetError(f"download of {url} failed ({exc}); the partial file {part} is kept and the next "
                           "run resumes it; or give a local mirror with --mirror RAW=PATH") from exc


def fetch(raw: RawFile, dest_dir: Path, mirrors: list[Path], verify: bool,
          log: Callable[[str], None] = print) -> Path:
    """Make ``dest_dir/raw.name`` present and verified; returns its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / raw.name
    part = dest_dir / f"{raw.name}.part"
    if target.exists():
        if not verify or checksum_matches(target, raw)[0]:
            return target
        log(f"{target}: checksum mismatch, fetching it again")
        target.unlink()
    for mirror in mirrors:
        candidate = Path(mirror) / raw.name
        if candidate.is_file():
            log(f"{raw.name}: copying from mirror {mirror}")
            shutil.copyfile(candidate, part)
            break
    else:
        if raw.url is None:
            places = ", ".join(map(str, mirrors)) or "no mirror given"
            raise MissingSourceError(f"{raw.name} cannot be downloaded and was not found in: {places}")
        log(f"{raw.name}: downloading {raw.url}")
        download(raw.url, part, log)
    if verify:
        ok, seen = checksum_matches(part, raw)
        if not ok:
            part.unlink()
            raise ChecksumError(f"{raw.name}: checksum mismatch (md5 {seen}, expected {raw.md5}"
                                f"{f' or content {raw.content_md5}' if raw.content_md5 else ''}); the file is "
                                "corrupt or not the official one. Fetch it again, or pass --no-verify "
                                "(data.verify_checksums: false) for a custom copy")
    else:
        log(f"{raw.name}: checksum NOT verified (verification turned off)")
    part.replace(target)
    return target
