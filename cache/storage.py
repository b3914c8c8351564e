"""Where a cache's objects live: the seam between the stage cache and its storage.

A :class:`Storage` keeps signed objects by key, each visible whole or not at
all, and gives this node a folder of its own (the index file, scratch work,
copies). Signing, verifying, unpickling and indexing stay in
:class:`~memotune.cache.StageCache`, so a further backend is one subclass here
and one line in :func:`storage_for`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

from .index import Index

#: Temporary files older than this are debris from a crashed writer.
STALE_TEMPORARY_SECONDS = 3600
TEMPORARY_PREFIX = ".tmp-"


class Storage(ABC):
    """Signed objects by key, and this node's own folder (``local``) for the cache."""

    #: where the objects are, as a user would write it (a folder or a URL)
    url: str
    #: this node's folder for the cache: index file, scratch work, local copies
    local: Path
    #: what every Ray node must be able to do with ``url`` (for error messages)
    reach: str

    @abstractmethod
    def open_index(self) -> Index:
        """The index of what is stored (and what it cost)."""

    @abstractmethod
    def staging(self, key: str) -> Path:
        """A folder on this node where ``key``'s object may be written before :meth:`publish`."""

    @abstractmethod
    def publish(self, key: str, temporary: Path) -> None:
        """Make the finished file ``temporary`` the object under ``key``, atomically."""

    @abstractmethod
    def fetch(self, key: str) -> Path:
        """A file on this node holding ``key``'s object; ``FileNotFoundError`` if there is none."""

    def discard_copy(self, key: str) -> bool:
        """Forget this node's copy of ``key`` if it keeps one apart from the object itself
        (so a damaged copy is fetched again); whether there was such a copy."""
        return False

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``'s object (nothing if it is gone already)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every object and every record the storage keeps."""

    @abstractmethod
    def remove_debris(self, known: set[str], cutoff: float) -> int:
        """Delete objects no key in ``known`` names and temporaries, older than ``cutoff``."""

    def scratch(self, key: str) -> Path:
        """A working folder for the stage run under ``key`` (checkpoints, Ray Train files)."""
        path = self.local / "work" / key[:32]
        path.mkdir(parents=True, exist_ok=True)
        return path

    @abstractmethod
    def write_probe(self, token: str) -> None:
        """Leave ``token`` where :meth:`check_probe` on another node must find it."""

    @abstractmethod
    def check_probe(self, token: str) -> str | None:
        """On a node: ``None`` if the probe holds ``token`` and the storage takes a write
        here, else what went wrong."""

    @abstractmethod
    def remove_probe(self, token: str) -> None: ...


class LocalStorage(Storage):
    """Objects as read-only files under ``root/objects``; the index beside them."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self.local = self.root
        self.reach = (
            f"the cache folder {self.root} must be reachable at the same path from every Ray "
            "node (a shared or network file system)"
        )
        self._objects = self.root / "objects"
        self._objects.mkdir(parents=True, exist_ok=True)

    def open_index(self) -> Index:
        return Index(self.root / "index.sqlite")

    def path(self, key: str) -> Path:
        return self._objects / key[:2] / f"{key}.joblib"

    def staging(self, key: str) -> Path:
        folder = self.path(key).parent  # the same file system, so the rename is atomic
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def publish(self, key: str, temporary: Path) -> None:
        os.chmod(temporary, 0o444)  # nobody rewrites an entry in place after it is signed
        os.replace(temporary, self.path(key))

    def fetch(self, key: str) -> Path:
        return self.path(key)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self._objects, ignore_errors=True)
        self._objects.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return list(self._objects.glob("*/*.joblib"))

    def remove_debris(self, known: set[str], cutoff: float) -> int:
        removed = 0
        for path in self.files():
            name = path.name
            orphan = name.startswith(TEMPORARY_PREFIX) or name.removesuffix(".joblib") not in known
            if orphan and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def write_probe(self, token: str) -> None:
        self._probe(token).write_text(token)

    def check_probe(self, token: str) -> str | None:
        probe = self._probe(token)
        try:
            if probe.read_text() != token:
                return f"{probe} holds something else: another folder at the same path"
            scratch = probe.with_name(f"{probe.name}-{secrets.token_hex(4)}")
            scratch.write_text(token)
            scratch.unlink()
        except OSError as error:
            return f"{type(error).__name__}: {error}"
        return None

    def remove_probe(self, token: str) -> None:
        self._probe(token).unlink(missing_ok=True)

    def _probe(self, token: str) -> Path:
        return self.root / f".probe-{token}"


def temporary_file(folder: Path) -> tuple[int, Path]:
    """A new file for an object being written (named so :meth:`remove_debris` knows it)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=".joblib")
    return fd, Path(name)


def _is_local(text: str) -> bool:
    return "://" not in text or text.startswith("file://")


def holds_cache(location: str | os.PathLike) -> bool:
    """Whether a cache was ever opened at ``location`` (nothing is created to find out)."""
    text = os.fspath(location)
    if _is_local(text):
        return (Path(text.removeprefix("file://")).expanduser() / "index.sqlite").exists()
    from .remote import holds_remote_cache

    return holds_remote_cache(text)


def storage_for(location: str | os.PathLike, *, local_max_bytes: int | None = None) -> Storage:
    """The storage at a folder or URL: a local path (or ``file://``) is a folder; any other
    URL that fsspec knows (``s3://``, ``gs://``, ``az://``, ``memory://``) is object
    storage, with a local copy of what this node reads bounded by ``local_max_bytes``."""
    text = os.fspath(location)
    if _is_local(text):
        return LocalStorage(text.removeprefix("file://"))
    from .remote import ObjectStorage  # fsspec only where it is used

    return ObjectStorage(text, local_max_bytes=local_max_bytes)


def stale_cutoff() -> float:
    return time.time() - STALE_TEMPORARY_SECONDS
