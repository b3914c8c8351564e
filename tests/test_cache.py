import multiprocessing
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

from memotune import Int, Pipeline, StageCache, run, stage
from memotune.cache import CacheWarning
from memotune.cache.signing import (
    SignatureError,
    default_secret_path,
    load_secret,
    make_trailer,
)

SECRET_A = "a" * 32
SECRET_B = "b" * 32


def put(cache, key, value, cost=1.0, stage_name="s", depth=0):
    chain = [
        {"stage": f"s{i}", "version": "1", "params": {}, "cost": cost, "compute_seconds": cost}
        for i in range(depth + 1)
    ]
    return cache.put(
        key,
        value,
        stage=stage_name,
        version="1",
        params={"k": key},
        parent_key="",
        lineage="L",
        chain=chain,
        cost=cost,
        compute_seconds=cost,
    )


def test_small_and_large_objects_round_trip(tmp_path):
    cache = StageCache(tmp_path / "c", secret=SECRET_A)
    big = np.arange(3 * 2**20 // 8, dtype=np.float64)  # 3 MB: memory-mapped on load
    put(cache, "big", {"x": big, "note": "n"})
    put(cache, "small", [1, "two", 3.0])
    hit = cache.get("big")
    assert np.array_equal(hit.value["x"], big) and hit.value["note"] == "n"
    hit.value["x"][0] = -1.0  # copy-on-write: the stored entry stays intact
    assert cache.get("big").value["x"][0] == 0.0
    assert cache.get("small").value == [1, "two", 3.0]
    assert cache.get("missing") is None
    info = cache.info("small")
    assert info.hits == 1 and info.load_seconds is not None
    assert stat.S_IMODE(os.stat(cache.storage.path("small")).st_mode) == 0o444


def test_a_large_entry_others_could_rewrite_is_loaded_from_verified_bytes(tmp_path):
    """Memory-mapping after the check is safe only while nobody else can write the file."""
    cache = StageCache(tmp_path / "c", secret=SECRET_A)
    big = np.arange(3 * 2**20 // 8, dtype=np.float64)
    put(cache, "big", big)
    assert isinstance(cache.get("big").value, np.memmap)  # our own read-only file: mapped
    os.chmod(cache.storage.path("big"), 0o464)  # group-writable: someone could rewrite it later
    loaded = cache.get("big").value
    assert not isinstance(loaded, np.memmap) and np.array_equal(loaded, big)


def test_an_entry_whose_code_is_missing_here_is_a_miss_but_kept(tmp_path):
    cache = StageCache(tmp_path / "c", secret=SECRET_A)
    put(cache, "needs-code", None)
    path = cache.storage.path("needs-code")
    os.chmod(path, 0o644)
    data = b"cmemotune_no_such_module_0123\nThing\n."  # a pickle of a class not importable
    trailer, _ = make_trailer(SECRET_A.encode(), "needs-code", memoryview(data))
    path.write_bytes(data + trailer)  # signed with our secret: sound, but its code is missing
    with pytest.warns(CacheWarning, match="needs code this process cannot import"):
        assert cache.get("needs-code") is None
    assert cache.info("needs-code") is not None and path.exists()


def test_the_secret_lives_outside_the_cache_with_owner_only_permissions(tmp_path):
    StageCache(tmp_path / "c")
    path = default_secret_path()
    assert path.exists() and not path.is_relative_to(tmp_path / "c")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="inside the cache folder"):
        load_secret(path.parent.parent)


class LeavesAMark:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_object_signed_with_another_secret_is_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"
    writer = StageCache(tmp_path / "c", secret=SECRET_A)
    put(writer, "k", LeavesAMark(marker))

    reader = StageCache(tmp_path / "c", secret=SECRET_B)
    with pytest.warns(CacheWarning, match="signature does not verify.*not unpickled"):
        assert reader.get("k") is None
    assert not marker.exists()
    assert reader.info("k") is None and not reader.storage.path("k").exists()

    put(writer, "k", LeavesAMark(marker))  # the test can fail: the right secret does unpickle
    writer.get("k")
    assert marker.exists()


def corrupt(path: Path, how: str) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_object_is_dropped_and_recomputed(tmp_path, how):
    calls = []

    @stage(space={"n": Int(1, 10)})
    def make(inputs, n):
        calls.append(n)
        return np.full(300_000, n)  # 2.4 MB: the memory-mapped path

    @stage
    def total(x):
        return float(x.sum())

    pipe = Pipeline([make, total])
    cache = StageCache(tmp_path / "c")
    cfg = {"make": {"n": 3}}
    first = run(pipe, cfg, cache=cache)
    make_key = first.stages[0].key
    cache.storage.path(first.stages[1].key).unlink()  # force a load of make's entry next time
    cache.index.delete(first.stages[1].key)
    corrupt(cache.storage.path(make_key), how)
    with pytest.warns(CacheWarning, match="damaged|truncated"):
        second = run(pipe, cfg, cache=cache)
    assert calls == [3, 3]
    assert second.objective == first.objective and not second.stages[0].hit
    assert cache.get(make_key) is not None  # recomputed and stored again


def test_eviction_goes_cheapest_per_byte_first_and_spares_pins(tmp_path):
    cache = StageCache(tmp_path / "c", secret=SECRET_A)
    blob = np.zeros(100_000, dtype=np.uint8)  # ~100 KB each
    put(cache, "cheap", blob, cost=0.1)
    put(cache, "pinned-cheap", blob, cost=0.01)
    put(cache, "dear", blob, cost=100.0)
    put(cache, "middling", blob, cost=5.0)
    put(cache, "small-cheap", np.zeros(10, dtype=np.uint8), cost=0.1)  # tiny: dear per byte
    cache.pin(["pinned-cheap"], owner="study-1")
    size = cache.info("dear").size_bytes
    cache.evict(max_bytes=int(2.5 * size))
    assert set(cache.index.keys()) == {"pinned-cheap", "dear", "small-cheap"}
    assert not cache.storage.path("cheap").exists() and not cache.storage.path("middling").exists()
    cache.unpin("study-1")
    cache.evict(max_bytes=int(1.5 * size))
    assert set(cache.index.keys()) == {"dear", "small-cheap"}


def test_a_byte_budget_is_enforced_on_every_store_and_recency_counts(tmp_path):
    blob = np.zeros(100_000, dtype=np.uint8)
    probe = StageCache(tmp_path / "probe", secret=SECRET_A)
    size = put(probe, "x", blob).size_bytes
    cache = StageCache(tmp_path / "c", secret=SECRET_A, max_bytes=int(2.5 * size))
    put(cache, "old", blob, cost=1.0)
    put(cache, "used", blob, cost=1.0)
    put(cache, "filler", blob, cost=50.0)
    assert set(cache.index.keys()) == {"used", "filler"}  # equal cost per byte: oldest goes
    cache.get("used")
    put(cache, "newer", blob, cost=1.0)
    assert cache.index.total_bytes() <= cache.max_bytes
    assert "filler" in cache.index.keys()


def test_the_prefix_query_survives_eviction_of_upstream_entries():
    @stage(space={"a": Int(0, 5)})
    def one(inputs, a):
        return a

    @stage(space={"b": Int(0, 5)})
    def two(x, b):
        return x + b

    @stage
    def three(x):
        return float(x)

    pipe = Pipeline([one, two, three])
    cache = StageCache("c")
    record = run(pipe, {"one": {"a": 1}, "two": {"b": 2}}, cache=cache)
    run(pipe, {"one": {"a": 1}, "two": {"b": 3}}, cache=cache)
    prefixes = cache.prefixes(pipe.lineages)
    assert sorted(p.depth for p in prefixes) == [0, 1, 1, 2, 2]
    cache.index.delete(record.stages[0].key)
    deep = [p for p in cache.prefixes(pipe.lineages) if p.key == record.stages[1].key][0]
    assert deep.config == {"one": {"a": 1}, "two": {"b": 2}}
    assert deep.costs == [s.cost for s in record.stages[:2]]


def _hammer(root: str, secret: str, worker: int, rounds: int, errors) -> None:
    warnings.simplefilter("error")
    cache = StageCache(root, secret=secret)
    keys = [f"key{i}" for i in range(4)]
    try:
        for r in range(rounds):
            for i, key in enumerate(keys):
                value = np.full(200_000 if i % 2 else 10, i, dtype=np.int64)
                hit = cache.get(key)
                if hit is not None and not np.array_equal(hit.value, value):
                    errors.put(f"worker {worker}: wrong value under {key}")
                if (r + worker + i) % 2 == 0:
                    put(cache, key, value)
    except Exception as error:  # noqa: BLE001
        errors.put(f"worker {worker}: {type(error).__name__}: {error}")


def test_two_processes_hammering_the_same_keys_leave_consistent_entries(tmp_path):
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    root = str(tmp_path / "c")
    StageCache(root, secret=SECRET_A)
    workers = [
        context.Process(target=_hammer, args=(root, SECRET_A, w, 40, errors)) for w in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    cache = StageCache(root, secret=SECRET_A)
    assert sorted(cache.index.keys()) == [f"key{i}" for i in range(4)]
    for i in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.get(f"key{i}").value[0] == i
    leftovers = [p for p in (tmp_path / "c" / "objects").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_verify_classifies_damage_and_foreign_signatures():
    from memotune.cache.signing import make_trailer, verify

    payload = b"x" * 1000
    trailer, _ = make_trailer(b"k" * 32, "key", memoryview(payload))
    assert verify(b"k" * 32, "key", memoryview(payload + trailer)) == 1000
    with pytest.raises(SignatureError, match="another secret"):
        verify(b"j" * 32, "key", memoryview(payload + trailer))
    with pytest.raises(SignatureError, match="another secret"):
        verify(b"k" * 32, "other-key", memoryview(payload + trailer))  # no swapping entries
    with pytest.raises(SignatureError, match="checksum"):
        verify(b"k" * 32, "key", memoryview(b"y" + payload[1:] + trailer))
