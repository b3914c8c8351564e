"""The stage-output store: keys to signed joblib objects, with an index.

Objects are written whole to a temporary file, signed, and handed to the
storage (a local folder or object storage, see :mod:`.storage`), which makes
them visible whole or not at all; two processes storing the same key both
succeed and leave one intact entry (each object carries its own checksum and
signature, so whichever lands last is consistent). Reads verify the
signature before anything is unpickled; a damaged or foreign object is
reported, dropped and treated as a miss, so the stage is recomputed. Large
outputs of this user's own are memory-mapped (numpy arrays copy-on-write),
so a hit costs about one pass of hashing over the file; a file someone else
could rewrite after the check is read once and unpickled from the verified
bytes.
"""

from __future__ import annotations

import io
import mmap
import os
import secrets
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from .index import EntryInfo
from .signing import SignatureError, load_secret, make_trailer, verify
from .storage import Storage, holds_cache, stale_cutoff, storage_for, temporary_file

DEFAULT_ROOT = ".memotune/cache"
#: Objects up to this size are read into memory and unpickled from there.
SMALL_OBJECT_BYTES = 1 << 20
_PROC_FD = Path("/proc/self/fd")


class CacheWarning(UserWarning):
    """A cache entry could not be used (damaged, foreign, unreadable) and was dropped."""


@dataclass(frozen=True)
class Hit:
    """A loaded cache entry."""

    value: Any
    info: EntryInfo
    load_seconds: float


@dataclass(frozen=True)
class CachedPrefix:
    """A cached output of a pipeline's stages ``0..depth``: what the tuner may reuse.

    ``chain[i]`` holds stage i's ``stage``, ``version``, ``params`` and true
    compute ``cost`` and ``compute_seconds``, exactly as they were run.
    """

    depth: int
    key: str
    chain: list[dict[str, Any]]
    load_seconds: float | None
    size_bytes: int
    pinned: bool

    @property
    def config(self) -> dict[str, dict[str, Any]]:
        return {link["stage"]: dict(link["params"]) for link in self.chain}

    @property
    def costs(self) -> list[float]:
        return [float(link["cost"]) for link in self.chain]


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds and served: ``hits`` counts stages served (a load of stage
    k's entry serves stages 0..k), as a study's records count them."""

    entries: int
    total_bytes: int
    hits: int
    pinned: int
    saved_seconds: float
    by_stage: dict[str, dict[str, float]]


@dataclass(frozen=True)
class PruneReport:
    evicted: list[EntryInfo]
    freed_bytes: int
    debris_files: int


class StageCache:
    """Stage outputs at ``location`` (a folder, or an object-storage URL such as
    ``s3://bucket/prefix``), signed with a secret kept outside it.

    ``max_bytes`` bounds the total size: after each store, the entries that are
    cheapest to recompute per byte and least recently used are evicted
    (GreedyDual-Size), never a pinned one. With object storage each node keeps
    a copy of what it loaded, bounded by ``local_max_bytes``.
    """

    def __init__(
        self,
        location: str | os.PathLike = DEFAULT_ROOT,
        *,
        max_bytes: int | None = None,
        secret: bytes | str | None = None,
        local_max_bytes: int | None = None,
    ) -> None:
        self.storage: Storage = storage_for(location, local_max_bytes=local_max_bytes)
        self.url = self.storage.url
        self.max_bytes = max_bytes
        self._local_max_bytes = local_max_bytes
        self._secret = load_secret(self.storage.local, secret)
        self.index = self.storage.open_index()

    def __repr__(self) -> str:
        return f"StageCache({self.url!r}, max_bytes={self.max_bytes})"

    def __reduce__(self):
        # Ray tasks receive the cache by value; the secret travels with it (it is
        # the same secret every node needs), never into the cache's storage.
        return (_rebuild, (self.url, self.max_bytes, self._secret, self._local_max_bytes))

    def scratch(self, key: str) -> Path:
        """A working folder on this node for the stage run under ``key``."""
        return self.storage.scratch(key)

    @property
    def reach(self) -> str:
        """What every node of a cluster must be able to do with this cache."""
        return self.storage.reach

    @contextmanager
    def probe(self) -> Iterator[str]:
        """A token that :meth:`check_probe` on any node sharing this cache finds, while
        the block runs."""
        token = secrets.token_hex(16)
        self.storage.write_probe(token)
        try:
            yield token
        finally:
            self.storage.remove_probe(token)

    def check_probe(self, token: str) -> str | None:
        """``None`` if this node sees the probe ``token`` and can write to the cache, else
        what went wrong."""
        return self.storage.check_probe(token)

    def __contains__(self, key: str) -> bool:
        return self.index.get(key) is not None

    def info(self, key: str) -> EntryInfo | None:
        return self.index.get(key)

    def get(self, key: str) -> Hit | None:
        """Load and verify the entry under ``key``; ``None`` on a miss or an unusable entry."""
        info = self.index.get(key)
        if info is None:
            return None
        started = time.perf_counter()
        try:
            value = self._load(key)
        except FileNotFoundError:
            self.index.delete(key)
            return None
        except SignatureError as error:
            self._drop(info, f"{error}; it was not unpickled")
            return None
        except (ImportError, AttributeError) as error:  # sound, but its code is missing here
            warnings.warn(
                f"cache entry {key[:12]} of stage '{info.stage}' needs code this process cannot "
                f"import ({type(error).__name__}: {error}); the stage is recomputed here and "
                "the entry kept",
                CacheWarning,
                stacklevel=2,
            )
            return None
        except Exception as error:  # noqa: BLE001 - any unpickling failure means "recompute"
            self._drop(info, f"it could not be unpickled ({type(error).__name__}: {error})")
            return None
        load_seconds = time.perf_counter() - started
        self.index.record_hit(key, load_seconds)
        return Hit(value, info, load_seconds)

    def put(
        self,
        key: str,
        value: Any,
        *,
        stage: str,
        version: str,
        params: dict[str, Any],
        parent_key: str,
        lineage: str,
        chain: list[dict[str, Any]],
        cost: float,
        compute_seconds: float,
    ) -> EntryInfo:
        """Store ``value`` atomically under ``key`` and index it; then evict if over budget."""
        size, checksum = self._write(key, value)
        now = time.time()
        info = EntryInfo(
            key=key,
            stage=stage,
            version=version,
            params=params,
            parent_key=parent_key,
            lineage=lineage,
            chain=chain,
            cost=float(cost),
            compute_seconds=float(compute_seconds),
            load_seconds=None,
            size_bytes=size,
            created=now,
            last_used=now,
            hits=0,
            checksum=checksum,
        )
        self.index.upsert(info)
        if self.max_bytes is not None:
            self.evict(self.max_bytes)
        return info

    def prefixes(self, lineages: list[str]) -> list[CachedPrefix]:
        """Every cached output of a pipeline whose stage k has lineage ``lineages[k]``."""
        found = []
        for depth, lineage in enumerate(lineages):
            for info in self.index.by_lineage(lineage):
                if info.depth == depth:
                    found.append(
                        CachedPrefix(
                            depth=depth,
                            key=info.key,
                            chain=info.chain,
                            load_seconds=info.load_seconds,
                            size_bytes=info.size_bytes,
                            pinned=info.pinned,
                        )
                    )
        return found

    def entries_of(self, lineage: str) -> list[EntryInfo]:
        """Every entry of one lineage (a chain of stage names and versions)."""
        return self.index.by_lineage(lineage)

    def pin(self, keys: list[str], owner: str) -> None:
        """Protect ``keys`` from eviction on behalf of ``owner`` (e.g. a study)."""
        self.index.pin(list(keys), owner)

    def unpin(self, owner: str | None, keys: list[str] | None = None) -> int:
        """Release ``owner``'s pins (on ``keys``, or all of them; every owner's with
        ``owner=None``); returns how many were released."""
        return self.index.unpin(owner, None if keys is None else list(keys))

    def evict(self, max_bytes: int) -> list[EntryInfo]:
        victims = self.index.pop_eviction_victims(max_bytes)
        for info in victims:
            self.storage.delete(info.key)
        return victims

    def prune(self, max_bytes: int | None = None) -> PruneReport:
        """Evict down to ``max_bytes`` (if given) and remove debris of crashed writers."""
        evicted = self.evict(max_bytes) if max_bytes is not None else []
        return PruneReport(
            evicted=evicted,
            freed_bytes=sum(info.size_bytes for info in evicted),
            debris_files=self.storage.remove_debris(self.index.keys(), stale_cutoff()),
        )

    def entries(self) -> list[EntryInfo]:
        self.index.refresh()
        return self.index.all()

    def stats(self) -> CacheStats:
        self.index.refresh()
        entries = self.index.all()
        by_stage: dict[str, dict[str, float]] = defaultdict(
            lambda: {"entries": 0, "bytes": 0, "hits": 0, "saved_seconds": 0.0}
        )
        for info in entries:
            row = by_stage[info.stage]
            row["entries"] += 1
            row["bytes"] += info.size_bytes
            # loading stage k's entry serves stages 0..k from the cache: a hit on each (as
            # a study's records count them), sparing each stage's compute
            for link in info.chain:
                served = by_stage[link["stage"]]
                served["hits"] += info.hits
                served["saved_seconds"] += info.hits * link["compute_seconds"]
        return CacheStats(
            entries=len(entries),
            total_bytes=sum(info.size_bytes for info in entries),
            hits=sum(int(row["hits"]) for row in by_stage.values()),
            pinned=sum(info.pinned for info in entries),
            saved_seconds=sum(row["saved_seconds"] for row in by_stage.values()),
            by_stage=dict(by_stage),
        )

    def clear(self) -> int:
        """Remove every entry and pin; return how many entries there were."""
        count = self.index.clear()
        self.storage.clear()
        return count

    def _write(self, key: str, value: Any) -> tuple[int, str]:
        fd, temporary = temporary_file(self.storage.staging(key))
        try:
            with os.fdopen(fd, "w+b") as f:
                joblib.dump(value, f)
                f.flush()
                size = f.tell()
                with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                    with memoryview(mapped) as payload:
                        trailer, checksum = make_trailer(self._secret, key, payload)
                f.write(trailer)
            self.storage.publish(key, temporary)
        finally:
            temporary.unlink(missing_ok=True)
        return size, checksum

    def _load(self, key: str) -> Any:
        try:
            return self._load_file(self.storage.fetch(key), key)
        except SignatureError:
            if not self.storage.discard_copy(key):
                raise
            return self._load_file(self.storage.fetch(key), key)  # this node's copy was bad

    def _load_file(self, path: Path, key: str) -> Any:
        fd = os.open(path, os.O_RDONLY)
        try:
            status = os.fstat(fd)
            size = status.st_size
            if size <= SMALL_OBJECT_BYTES or not _PROC_FD.is_dir() or not _only_ours(status):
                data = _read_all(fd, size)
                payload_bytes = verify(self._secret, key, memoryview(data))
                return joblib.load(io.BytesIO(memoryview(data)[:payload_bytes]))
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
                with memoryview(mapped) as data:
                    verify(self._secret, key, data)
            # Load through our own descriptor: the very inode that was verified, even
            # if someone renames another file over the path meanwhile. Nobody else can
            # write to it (``_only_ours``), so it still holds what was verified.
            return joblib.load(_PROC_FD / str(fd), mmap_mode="c")
        finally:
            os.close(fd)

    def _drop(self, info: EntryInfo, reason: str) -> None:
        warnings.warn(
            f"cache entry {info.key[:12]} of stage '{info.stage}' in {self.url}: {reason}; "
            "dropped, the stage will be recomputed",
            CacheWarning,
            stacklevel=3,
        )
        self.index.delete(info.key)
        self.storage.delete(info.key)


#: This process's open caches, by how they were opened, with their index file's inode.
_OPEN: dict[tuple, tuple[StageCache, int]] = {}


def _rebuild(
    url: str, max_bytes: int | None, secret: bytes, local_max_bytes: int | None
) -> StageCache:
    """Unpickle a cache (every Ray task receives one): reuse this process's open handle
    while its index file is still the same file, else open it afresh."""
    key = (url, max_bytes, secret, local_max_bytes)
    known = _OPEN.get(key)
    if known is not None and _inode(known[0].index.path) == known[1]:
        return known[0]
    cache = StageCache(url, max_bytes=max_bytes, secret=secret, local_max_bytes=local_max_bytes)
    _OPEN[key] = (cache, _inode(cache.index.path))
    return cache


def open_cache(
    cache: StageCache | str | os.PathLike | None | bool, *, create: bool = True
) -> StageCache | None:
    """A cache from a folder or URL, an existing cache, or ``None``/``False`` for none.

    With ``create=False`` a location that holds no cache yet is an error.
    """
    if cache is None or cache is False:
        return None
    if isinstance(cache, StageCache):
        return cache
    if not create and not holds_cache(cache):
        raise FileNotFoundError(f"no stage cache at {os.fspath(cache)}")
    return StageCache(cache)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _only_ours(status: os.stat_result) -> bool:
    """Whether only this user can change the file: then it may be memory-mapped after it
    was verified; otherwise it is read once and unpickled from the verified bytes."""
    return status.st_uid == os.geteuid() and not status.st_mode & 0o022


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
