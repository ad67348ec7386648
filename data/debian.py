"""Files inside a Debian package, fetched with ``apt-get download`` into the cache and pinned by sha256.

The package itself is fetched and checked by ``recipes.fetch_archive``; this module only opens
the ``.deb`` (an ``ar`` archive holding ``data.tar.*``) with the standard library, so nothing is
installed and no root access is needed. Imports only the standard library and ``recipes``.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from sine_fields.data.recipes import Archive, DataError, atomic_write_bytes, cache_dir, fetch_archive

__all__ = ["cached_members", "debian_members", "debian_package"]


def debian_package(name: str, version: str, sha256: str, arch: str = "all") -> Archive:
    """The ``Archive`` for one pinned version of a Debian package (apt writes ``name_version_arch.deb``)."""
    # apt-get download escapes an epoch's ':' as '%3a' in the file name.
    filename = f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
    return Archive(filename=filename, sha256=sha256, command=("apt-get", "download", f"{name}={version}"))


def _data_tar(deb: Path) -> tuple[str, bytes]:
    """Name and bytes of the ``data.tar.*`` member of a ``.deb`` (an ``ar`` archive)."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise DataError(f"{deb} is not a Debian package (no ar header); delete it and retry")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            return name, data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)  # ar pads members to an even length
    raise DataError(f"{deb} has no data.tar member; delete it and retry")


def _member_paths(package: Archive, members: list[str]) -> list[Path]:
    folder = cache_dir() / "debian" / package.filename.removesuffix(".deb")
    return [folder / member for member in members]


def cached_members(package: Archive, members: list[str]) -> list[Path] | None:
    """The unpacked members if all are already in the cache, else ``None`` (fetches nothing)."""
    targets = _member_paths(package, members)
    return targets if all(t.exists() for t in targets) else None


def debian_members(package: Archive, members: list[str]) -> list[Path]:
    """Unpack ``members`` (paths inside the package, e.g. ``usr/share/x/y.dae``) into the cache once.

    Returns the cached files in the order asked, keeping each member's folder layout so that
    files referring to each other by relative path (a model and its texture) still find each other.
    """
    targets = _member_paths(package, members)
    if all(t.exists() for t in targets):
        return targets
    deb = fetch_archive(package)
    name, body = _data_tar(deb)
    compression = name.rsplit(".", 1)[-1] if name.count(".") > 1 else ""
    with tarfile.open(fileobj=io.BytesIO(body), mode=f"r:{compression}" if compression else "r:") as tar:
        for member, target in zip(members, targets):
            handle = None
            for candidate in (member, "./" + member):
                try:
                    handle = tar.extractfile(candidate)
                except KeyError:
                    continue
                if handle is not None:
                    break
            if handle is None:
                raise DataError(f"{deb.name} holds no file {member}; the package layout changed, pick the path by hand")
            atomic_write_bytes(target, handle.read())
    return targets
