"""Keyed signatures for cache objects.

Cache objects are pickles and unpickling runs code, so a cache folder shared
between nodes or people must not be a way in. Every object file ends with a
trailer holding a checksum of its payload and a keyed signature of that
checksum and the entry's key. The secret lives outside the cache folder: in
``$MEMOTUNE_CACHE_SECRET`` (what a cluster sets on every node), or in a file
created on first use with owner-only permissions in the user's config folder.
A file whose signature does not verify is never unpickled.

The checksum is a SHA-256 tree over fixed-size chunks, hashed on several
threads (``hashlib`` releases the GIL), so that verifying a large output costs
a fraction of reading it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SECRET_ENV = "MEMOTUNE_CACHE_SECRET"
MAGIC = b"MTCACHE1"
DIGEST_BYTES = 32
TRAILER_BYTES = len(MAGIC) + 2 * DIGEST_BYTES
CHUNK_BYTES = 8 * 2**20
_DOMAIN = b"memotune-cache-v1\0"

_pool = ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)))


class SignatureError(Exception):
    """A cache object whose checksum or signature does not verify."""


def default_secret_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(config) / "memotune" / "cache-secret"


def load_secret(cache_root: Path, secret: bytes | str | None = None) -> bytes:
    """The signing secret: given, from the environment, or from the user's config file."""
    if secret is None:
        secret = os.environ.get(SECRET_ENV)
    if secret is not None:
        secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(secret) < 16:
            raise ValueError(f"the cache secret must be at least 16 bytes ({SECRET_ENV})")
        return secret
    path = default_secret_path()
    if _is_within(path, cache_root):
        raise ValueError(
            f"the cache secret file {path} would lie inside the cache folder {cache_root}; "
            f"set {SECRET_ENV} or XDG_CONFIG_HOME elsewhere"
        )
    return _read_or_create_secret(path)


def tree_digest(buffer: memoryview) -> bytes:
    """SHA-256 of the SHA-256 digests of ``buffer``'s fixed-size chunks."""
    chunks = range(0, len(buffer), CHUNK_BYTES)
    if len(chunks) <= 1:
        digests = [hashlib.sha256(buffer).digest()]
    else:
        digests = list(
            _pool.map(lambda i: hashlib.sha256(buffer[i : i + CHUNK_BYTES]).digest(), chunks)
        )
    return hashlib.sha256(len(buffer).to_bytes(8, "little") + b"".join(digests)).digest()


def sign(secret: bytes, key: str, digest: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + key.encode() + b"\0" + digest, "sha256").digest()


def make_trailer(secret: bytes, key: str, payload: memoryview) -> tuple[bytes, str]:
    """The trailer to append to ``payload``, and the payload's checksum in hex."""
    digest = tree_digest(payload)
    return MAGIC + digest + sign(secret, key, digest), digest.hex()


def verify(secret: bytes, key: str, data: memoryview) -> int:
    """Check ``data`` (payload + trailer); return the payload's length.

    Raises ``SignatureError`` saying whether the object is damaged (checksum) or
    was signed by someone else (signature).
    """
    if len(data) < TRAILER_BYTES or bytes(data[-TRAILER_BYTES:][: len(MAGIC)]) != MAGIC:
        raise SignatureError("the object is truncated or damaged (no valid trailer)")
    trailer = bytes(data[-TRAILER_BYTES:])
    stored_digest = trailer[len(MAGIC) : len(MAGIC) + DIGEST_BYTES]
    stored_signature = trailer[len(MAGIC) + DIGEST_BYTES :]
    payload_bytes = len(data) - TRAILER_BYTES
    if tree_digest(data[:payload_bytes]) != stored_digest:
        raise SignatureError("the object is damaged (checksum mismatch)")
    if not hmac.compare_digest(sign(secret, key, stored_digest), stored_signature):
        raise SignatureError(
            "the object's signature does not verify: it was written with another secret "
            "or tampered with"
        )
    return payload_bytes


def _read_or_create_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        candidate = secrets.token_hex(32).encode()
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(candidate)
        try:
            os.link(temporary, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            return _read_or_create_secret(path)
        finally:
            temporary.unlink()
        return candidate
    if path.stat().st_mode & 0o077:
        warnings.warn(
            f"the cache secret {path} is readable by other users; chmod 600 it",
            stacklevel=3,
        )
    if len(secret) < 16:
        raise ValueError(f"the cache secret in {path} is shorter than 16 bytes")
    return secret


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
