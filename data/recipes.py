"""Named data sources: a cache folder outside the repository, sha256 checks, atomic writes.

A recipe fetches an archive once through a package registry's ordinary client (``npm pack``,
``apt-get download``), checks its sha256, converts it, and keeps the result in the cache. When a
source cannot be reached the error says which command was tried and where to put the file by hand.
This module imports only the standard library, so data can be fetched before the venv exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CACHE_ENV", "DataError", "Archive", "atomic_write_bytes", "cache_dir", "fetch_archive", "sha256_of"]

CACHE_ENV = "SINE_FIELDS_CACHE"
"""Environment variable that overrides the cache folder (default ``~/.cache/sine-fields``)."""


class DataError(Exception):
    """A named source that cannot be found, fetched, checked or converted. The message is one line
    that says what was tried and how to supply the file by hand; the CLI prints it as a user error."""


@dataclass(frozen=True)
class Archive:
    """A file fetched by a registry client into the cache and pinned by its sha256."""

    filename: str
    """Name the client writes, e.g. ``bunny-1.0.1.tgz``."""
    sha256: str
    """Expected digest of that file."""
    command: tuple[str, ...]
    """Client command run inside a temporary folder, e.g. ``("npm", "pack", "bunny@1.0.1")``."""


def cache_dir() -> Path:
    """The cache folder (created on first use): ``$SINE_FIELDS_CACHE`` or ``~/.cache/sine-fields``."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "sine-fields")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The twin of ``sine_fields.io.atomic_write_bytes``: ``data/`` may import only the standard
    library, numpy and trimesh, so it keeps its own copy of these few lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_archive(archive: Archive) -> Path:
    """Return the cached, checked archive, fetching it with its client the first time.

    A file already in the cache (fetched before, or copied there by hand) is used when its sha256
    matches; a mismatch is an error rather than a silent re-download, so a hand-supplied file that is
    wrong is reported.
    """
    target = cache_dir() / "downloads" / archive.filename
    manual = f"or place {archive.filename} (sha256 {archive.sha256[:12]}...) at {target} by hand"
    if not target.exists():
        if shutil.which(archive.command[0]) is None:
            raise DataError(f"cannot fetch {archive.filename}: `{archive.command[0]}` is not installed; {manual}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            try:
                subprocess.run(archive.command, cwd=tmp, check=True, capture_output=True, text=True, timeout=300)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                detail = (getattr(error, "stderr", "") or "").strip().splitlines()
                reason = detail[-1] if detail else type(error).__name__
                raise DataError(f"`{' '.join(archive.command)}` failed ({reason}); {manual}") from None
            produced = Path(tmp) / archive.filename
            if not produced.exists():
                raise DataError(f"`{' '.join(archive.command)}` did not produce {archive.filename}; {manual}")
            os.replace(produced, target)
    actual = sha256_of(target)
    if actual != archive.sha256:
        raise DataError(
            f"{target} has sha256 {actual[:12]}..., expected {archive.sha256[:12]}...; delete it and retry, {manual}"
        )
    return target
