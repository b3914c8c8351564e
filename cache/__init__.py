"""The stage-output store: signed joblib objects in a folder or in object storage
(``s3://``, ``gs://``, ``az://``, ``memory://``), an index of what each cost,
eviction under a byte budget, and the query the tuner asks ("which prefixes of
this pipeline are cached, and at what cost?")."""

from .index import EntryInfo
from .signing import SECRET_ENV, SignatureError
from .store import (
    DEFAULT_ROOT,
    CachedPrefix,
    CacheStats,
    CacheWarning,
    Hit,
    PruneReport,
    StageCache,
    open_cache,
)

__all__ = [
    "DEFAULT_ROOT",
    "SECRET_ENV",
    "CacheStats",
    "CacheWarning",
    "CachedPrefix",
    "EntryInfo",
    "Hit",
    "PruneReport",
    "SignatureError",
    "StageCache",
    "open_cache",
]
