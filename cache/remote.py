"""The stage cache in object storage (S3, GCS, Azure, anything fsspec opens).

The bucket holds, under the cache's prefix:

- ``objects/ab/<key>.joblib``: the signed objects, each one PUT, so visible
  whole or not at all (two writers of a key: the last whole object wins);
- ``index/entries/<key>.json``: what each entry is and what it cost, written
  after its object, so a record never names an object that was not there;
- ``index/pins/<owner>/<key>``: empty objects, one per pin;
- ``index/hits/<key>/<writer>.json``: each process's own count of hits on an
  entry, so no two writers ever rewrite the same record (published every few
  seconds, not per hit).

Each node keeps the cache's index as a SQLite mirror of those records, in its
own folder (rebuilt from the bucket when lost), and a bounded read-through copy
of the objects it loaded, so a hot prefix is downloaded once per node.
Endpoint and credentials come from where the provider's own tools look
(for S3: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, …).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import os
import secrets
import socket
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote, unquote

import fsspec

from .index import EntryInfo, Index
from .storage import LocalStorage, Storage, temporary_file

#: What a node keeps of the objects it loaded, unless told otherwise.
DEFAULT_LOCAL_BYTES = 10 * 2**30
LOCAL_ENV = "MEMOTUNE_CACHE_LOCAL"
#: A process publishes its hit counts at most this often (and when it exits).
PUBLISH_HITS_SECONDS = 5.0
#: The object that marks a prefix as a stage cache.
MARKER = "memotune-cache"
#: The mirror re-reads the bucket's records at most this often for the tuner's queries.
SYNC_SECONDS = 1.0


def local_folder(url: str) -> Path:
    """This node's folder for the cache at ``url``: ``$MEMOTUNE_CACHE_LOCAL``, else under
    ``$XDG_CACHE_HOME`` (``~/.cache``)."""
    base = os.environ.get(LOCAL_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "memotune"
    )
    return Path(base).expanduser().absolute() / hashlib.sha256(url.encode()).hexdigest()[:16]


def _open_fs(url: str):
    """The file system and base path of ``url``; listings are never cached, since other
    nodes write under the same prefix."""
    try:
        return fsspec.core.url_to_fs(url.rstrip("/"), use_listings_cache=False)
    except (ValueError, ImportError) as error:  # an unknown scheme, or its package missing
        raise ValueError(f"cannot open a stage cache at {url}: {error}") from None


def holds_remote_cache(url: str) -> bool:
    fs, base = _open_fs(url)
    return fs.exists(f"{base}/{MARKER}")


class ObjectStorage(Storage):
    """Objects under a URL prefix; ``local_max_bytes`` bounds this node's copies of them."""

    def __init__(self, url: str, *, local_max_bytes: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, self.base = _open_fs(self.url)
        if not self.fs.exists(f"{self.base}/{MARKER}"):
            self.fs.pipe_file(f"{self.base}/{MARKER}", b"memotune stage cache\n")
        self.local = local_folder(self.url)
        self.reach = f"the cache {self.url} must be reachable from every Ray node"
        self.copies = LocalStorage(self.local)
        self.local_max_bytes = DEFAULT_LOCAL_BYTES if local_max_bytes is None else local_max_bytes

    def open_index(self) -> Index:
        return SharedIndex(self.local / "index.sqlite", self.fs, f"{self.base}/index")

    def remote(self, key: str) -> str:
        return f"{self.base}/objects/{key[:2]}/{key}.joblib"

    def staging(self, key: str) -> Path:
        return self.copies.staging(key)  # so the finished file becomes this node's copy

    def publish(self, key: str, temporary: Path) -> None:
        self.fs.put_file(str(temporary), self.remote(key))
        self.copies.publish(key, temporary)  # the writer's node has it already
        self._trim(keep=key)

    def fetch(self, key: str) -> Path:
        copy = self.copies.path(key)
        if copy.exists():
            os.utime(copy)  # recency for trimming
            return copy
        fd, temporary = temporary_file(self.copies.staging(key))
        os.close(fd)
        try:
            self.fs.get_file(self.remote(key), str(temporary))
            self.copies.publish(key, temporary)
        finally:
            temporary.unlink(missing_ok=True)
        self._trim(keep=key)
        return copy

    def discard_copy(self, key: str) -> bool:
        existed = self.copies.path(key).exists()
        self.copies.delete(key)
        return existed

    def delete(self, key: str) -> None:
        self.copies.delete(key)
        try:
            self.fs.rm_file(self.remote(key))
        except FileNotFoundError:
            pass

    def clear(self) -> None:
        for folder in ("objects", "index"):
            try:
                self.fs.rm(f"{self.base}/{folder}", recursive=True)
            except FileNotFoundError:
                pass
        self.copies.clear()

    def remove_debris(self, known: set[str], cutoff: float) -> int:
        removed = self.copies.remove_debris(known, cutoff)
        for path, info in _find(self.fs, f"{self.base}/objects", detail=True).items():
            key = path.rsplit("/", 1)[-1].removesuffix(".joblib")
            if key not in known and _modified(info) < cutoff:
                self.fs.rm_file(path)
                removed += 1
        return removed

    def write_probe(self, token: str) -> None:
        self.fs.pipe_file(self._probe(token), token.encode())

    def check_probe(self, token: str) -> str | None:
        try:
            if self.fs.cat_file(self._probe(token)) != token.encode():
                return f"{self._probe(token)} holds something else"
            scratch = f"{self._probe(token)}-{secrets.token_hex(4)}"
            self.fs.pipe_file(scratch, token.encode())
            self.fs.rm_file(scratch)
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            return f"{type(error).__name__}: {error}"
        return None

    def remove_probe(self, token: str) -> None:
        try:
            self.fs.rm_file(self._probe(token))
        except FileNotFoundError:
            pass

    def _probe(self, token: str) -> str:
        return f"{self.base}/probes/{token}"

    def _trim(self, keep: str) -> None:
        """Drop this node's least recently used copies while they exceed the bound."""
        files = [(p.stat(), p) for p in self.copies.files()]
        total = sum(status.st_size for status, _ in files)
        for status, path in sorted(files, key=lambda item: item[0].st_mtime):
            if total <= self.local_max_bytes:
                break
            if path.name != f"{keep}.joblib":
                path.unlink(missing_ok=True)
                total -= status.st_size


class SharedIndex(Index):
    """A node's SQLite mirror of the index records in the bucket.

    Every change goes to the bucket first and then to the mirror; queries
    first pick up what other drivers and nodes wrote (at most every
    :data:`SYNC_SECONDS`); :meth:`refresh` also sums every writer's hit counts.
    """

    def __init__(self, path: Path, fs, base: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path)
        self.fs, self.base = fs, base
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._own_hits: dict[str, int] = defaultdict(int)
        self._unpublished: dict[str, dict] = {}
        self._published_at = float("-inf")
        self._synced_at = float("-inf")
        atexit.register(self._publish_at_exit)

    def _record(self, key: str) -> str:
        return f"{self.base}/entries/{key}.json"

    def _pin(self, owner: str, key: str) -> str:
        return f"{self.base}/pins/{quote(owner, safe='')}/{key}"

    def get(self, key: str) -> EntryInfo | None:
        found = super().get(key)
        if found is None:  # perhaps another node stored it since the last sync
            try:
                record = self.fs.cat_file(self._record(key))
            except FileNotFoundError:
                return None
            super().upsert(_entry_from(record))
            found = super().get(key)
        return found

    def upsert(self, entry: EntryInfo) -> None:
        self.fs.pipe_file(self._record(entry.key), _record_of(entry))
        super().upsert(entry)

    def record_hit(self, key: str, load_seconds: float) -> None:
        super().record_hit(key, load_seconds)
        self._own_hits[key] += 1
        self._unpublished[key] = {
            "hits": self._own_hits[key],
            "last_used": time.time(),
            "load": load_seconds,
        }
        if time.monotonic() - self._published_at >= PUBLISH_HITS_SECONDS:
            self.publish_hits()

    def publish_hits(self) -> None:
        """Write this process's hit counts that the bucket does not have yet (a hit is not
        held up by a request each; they go out at most every few seconds and at exit)."""
        records = {
            f"{self.base}/hits/{key}/{self.writer}.json": json.dumps(usage).encode()
            for key, usage in self._unpublished.items()
        }
        self._unpublished = {}
        self._published_at = time.monotonic()
        if records:
            self.fs.pipe(records)

    def delete(self, key: str) -> None:
        self._forget([key])
        super().delete(key)

    def by_lineage(self, lineage: str) -> list[EntryInfo]:
        self.sync()
        return super().by_lineage(lineage)

    def all(self, order: str = "e.last_used DESC") -> list[EntryInfo]:
        self.sync()
        return super().all(order)

    def keys(self) -> set[str]:
        self.sync()
        return super().keys()

    def total_bytes(self) -> int:
        self.sync()
        return super().total_bytes()

    def pop_eviction_victims(self, max_bytes: int) -> list[EntryInfo]:
        self.sync(force=True)
        victims = super().pop_eviction_victims(max_bytes)
        self._forget([victim.key for victim in victims])
        return victims

    def pin(self, keys: list[str], owner: str) -> None:
        for key in keys:
            self.fs.pipe_file(self._pin(owner, key), b"")
        super().pin(keys, owner)

    def unpin(self, owner: str | None, keys: list[str] | None = None) -> int:
        self.sync(force=True)
        if owner is None:
            gone = _find(self.fs, f"{self.base}/pins")
        elif keys is None:
            gone = _find(self.fs, f"{self.base}/pins/{quote(owner, safe='')}")
        else:
            gone = [self._pin(owner, key) for key in keys]
        _remove(self.fs, gone)
        return super().unpin(owner, keys)

    def pinned(self, owner: str | None = None) -> set[str]:
        self.sync()
        return super().pinned(owner)

    def clear(self) -> int:
        self.sync(force=True)
        return super().clear()

    def _publish_at_exit(self) -> None:
        try:
            self.publish_hits()
        except Exception:  # noqa: BLE001 - hit counts are statistics; the bucket may be gone
            pass

    def sync(self, *, force: bool = False) -> None:
        """Bring the mirror up to the bucket's entries and pins."""
        now = time.monotonic()
        if not force and now - self._synced_at < SYNC_SECONDS:
            return
        listed = {
            path.rsplit("/", 1)[-1].removesuffix(".json"): path
            for path in _find(self.fs, f"{self.base}/entries")
        }
        known = Index.keys(self)
        new = [listed[key] for key in listed.keys() - known]
        for record in (self.fs.cat(new, on_error="omit") if new else {}).values():
            Index.upsert(self, _entry_from(record))
        for key in known - listed.keys():
            Index.delete(self, key)
        pins = []
        for path in _find(self.fs, f"{self.base}/pins"):
            owner, key = path.removeprefix(f"{self.base}/pins/").split("/", 1)
            pins.append((key, unquote(owner)))
        self.replace_pins(pins)
        self._synced_at = now

    def refresh(self) -> None:
        """Sync, and count every writer's hits on every entry."""
        self.publish_hits()
        self.sync(force=True)
        paths = _find(self.fs, f"{self.base}/hits")
        usage: dict[str, dict[str, float]] = {}
        for path, data in (self.fs.cat(paths, on_error="omit") if paths else {}).items():
            key = path.removeprefix(f"{self.base}/hits/").split("/", 1)[0]
            counted = json.loads(data)
            total = usage.setdefault(key, {"hits": 0, "last_used": 0.0, "load": None})
            total["hits"] += counted["hits"]
            if counted["last_used"] > total["last_used"]:
                total["last_used"], total["load"] = counted["last_used"], counted["load"]
        for key, total in usage.items():
            self.set_usage(key, int(total["hits"]), total["last_used"], total["load"])

    def _forget(self, keys: list[str]) -> None:
        """Remove the bucket's records of ``keys`` (entry, hit counts, pins)."""
        gone = [self._record(key) for key in keys]
        for key in keys:
            gone += _find(self.fs, f"{self.base}/hits/{key}")
        owners = {path.split("/")[-2] for path in _find(self.fs, f"{self.base}/pins")}
        gone += [f"{self.base}/pins/{owner}/{key}" for owner in owners for key in keys]
        _remove(self.fs, gone)


def _record_of(entry: EntryInfo) -> bytes:
    record = dataclasses.asdict(entry)
    for local_only in ("pinned", "hits", "load_seconds"):
        record.pop(local_only)
    return json.dumps(record, sort_keys=True).encode()


def _entry_from(record: bytes) -> EntryInfo:
    return EntryInfo(**json.loads(record), load_seconds=None, hits=0)


def _find(fs, prefix: str, *, detail: bool = False):
    try:
        return fs.find(prefix, detail=detail)
    except FileNotFoundError:
        return {} if detail else []


def _remove(fs, paths: list[str]) -> None:
    """Delete ``paths``, those already gone included."""
    for path in paths:
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass


def _modified(info: dict) -> float:
    stamp = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
