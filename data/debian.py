"""Files inside a Debian package, fetched with ``apt-get download`` into the cache and pinned by sha256.

The package itself is fetched and checked by ``recipes.fetch_archive``; this module only unpacks
the ``.deb``, with ``dpkg-deb -x`` where it exists (any Debian or Ubuntu machine) and otherwise with
the standard library (a ``.deb`` is an ``ar`` archive holding ``data.tar.*``), so nothing is installed
and no root access is needed. Imports only the standard library and ``recipes``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sine_fields.data.recipes import Archive, DataError, atomic_write_bytes, cache_dir, fetch_archive

__all__ = ["cached_members", "debian_members", "debian_package"]


def debian_package(name: str, version: str, sha256: str, arch: str = "all") -> Archive:
    """The ``Archive`` for one pinned version of a Debian package (apt writes ``name_version_arch.deb``)."""
    # apt-get download escapes an epoch's ':' as '%3a' in the file name.
    filename = f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
    return Archive(filename=filename, sha256=sha256, command=("apt-get", "download", f"{name}={version}"))


def _data_tar(deb: Path) -> tuple[str, bytes]:
    """Name and bytes of the ``data.tar.*`` member of a ``.deb`` (an ``ar`` archive): the fallback
    where ``dpkg-deb`` is absent."""
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
    if shutil.which("dpkg-deb"):
        _unpack_with_dpkg(deb, members, targets)
    else:
        _unpack_with_tarfile(deb, members, targets)
    return targets


def _unpack_with_dpkg(deb: Path, members: list[str], targets: list[Path]) -> None:
    """``dpkg-deb -x`` the package into a temporary folder beside the cache, then keep ``members``."""
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        try:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True, text=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            detail = (getattr(error, "stderr", "") or "").strip().splitlines()
            reason = detail[-1] if detail else type(error).__name__
            raise DataError(f"`dpkg-deb -x {deb.name}` failed ({reason}); delete {deb} and retry") from None
        for member, target in zip(members, targets):
            source = Path(tmp) / member
            if not source.is_file():
                raise DataError(f"{deb.name} holds no file {member}; the package layout changed, pick the path by hand")
            atomic_write_bytes(target, source.read_bytes())


def _unpack_with_tarfile(deb: Path, members: list[str], targets: list[Path]) -> None:
    """The same as ``_unpack_with_dpkg`` with the standard library's ``ar`` reading and ``tarfile``."""
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
