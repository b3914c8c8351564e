"""The stage cache on object storage, against a real S3 server (moto) on loopback.

A "node" here is a cache opened with its own local folder
(``MEMOTUNE_CACHE_LOCAL``): what one node has on disk, the other has not.
"""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import fsspec
import numpy as np
import pytest
from test_cache import SECRET_A, SECRET_B, LeavesAMark, put

from memotune import Int, Pipeline, StageCache, run, stage
from memotune.cache import CacheWarning


def on_node(url, node, tmp_path, monkeypatch, **options) -> StageCache:
    monkeypatch.setenv("MEMOTUNE_CACHE_LOCAL", str(tmp_path / node))
    return StageCache(url, secret=options.pop("secret", SECRET_A), **options)


def bucket_paths(url: str, folder: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(url, use_listings_cache=False)
    try:
        return fs.find(f"{base}/{folder}")
    except FileNotFoundError:
        return []


def test_an_entry_stored_on_one_node_is_a_hit_on_another_and_read_through(
    s3_cache_url, tmp_path, monkeypatch
):
    a = on_node(s3_cache_url, "a", tmp_path, monkeypatch)
    big = np.arange(3 * 2**20 // 8, dtype=np.float64)  # memory-mapped from the local copy
    put(a, "big", {"x": big})
    put(a, "small", [1, "two"])
    assert not (tmp_path / "b").exists()

    b = on_node(s3_cache_url, "b", tmp_path, monkeypatch)
    assert b.get("small").value == [1, "two"]
    hit = b.get("big")
    assert np.array_equal(hit.value["x"], big) and isinstance(hit.value["x"], np.memmap)
    # a repeated hit is served from b's own copy: it survives the bucket losing the object
    fs, base = fsspec.core.url_to_fs(s3_cache_url)
    fs.rm_file(f"{base}/objects/bi/big.joblib")
    assert np.array_equal(b.get("big").value["x"], big)
    assert sorted(e.key for e in b.entries()) == ["big", "small"]
    assert b.stats().hits == 3 and a.stats().hits == 3  # every node's hits, counted once


def test_a_foreign_object_is_never_unpickled_and_is_dropped_from_the_bucket(
    s3_cache_url, tmp_path, monkeypatch
):
    marker = tmp_path / "pickle-ran"
    writer = on_node(s3_cache_url, "a", tmp_path, monkeypatch)
    put(writer, "k", LeavesAMark(marker))
    reader = on_node(s3_cache_url, "b", tmp_path, monkeypatch, secret=SECRET_B)
    with pytest.warns(CacheWarning, match="signature does not verify.*not unpickled"):
        assert reader.get("k") is None
    assert not marker.exists()
    assert bucket_paths(s3_cache_url, "objects") == []
    assert bucket_paths(s3_cache_url, "index/entries") == []

    put(writer, "k", LeavesAMark(marker))  # the right secret does unpickle: the test can fail
    on_node(s3_cache_url, "c", tmp_path, monkeypatch).get("k")
    assert marker.exists()


def test_an_object_damaged_in_the_bucket_is_dropped_and_recomputed(
    s3_cache_url, tmp_path, monkeypatch
):
    calls = []

    @stage(space={"n": Int(1, 10)})
    def make(inputs, n):
        calls.append(n)
        return np.full(300_000, n)

    @stage
    def total(x):
        return float(x.sum())

    pipe = Pipeline([make, total])
    first = run(pipe, {"make": {"n": 3}}, cache=on_node(s3_cache_url, "a", tmp_path, monkeypatch))
    fs, base = fsspec.core.url_to_fs(s3_cache_url)
    for record in first.stages:
        path = f"{base}/objects/{record.key[:2]}/{record.key}.joblib"
        data = bytearray(fs.cat_file(path))
        data[len(data) // 2] ^= 0xFF
        fs.pipe_file(path, bytes(data))
    other = on_node(s3_cache_url, "b", tmp_path, monkeypatch)
    with pytest.warns(CacheWarning, match="damaged"):
        second = run(pipe, {"make": {"n": 3}}, cache=other)
    assert calls == [3, 3] and second.objective == first.objective
    assert not any(s.hit for s in second.stages)
    assert other.get(first.stages[1].key) is not None  # stored again, whole


def _store_repeatedly(url: str, local: str, value: int, rounds: int) -> None:
    os.environ["MEMOTUNE_CACHE_LOCAL"] = local
    cache = StageCache(url, secret=SECRET_A)
    for _ in range(rounds):
        put(cache, "contested", np.full(2**20, value, dtype=np.float64))  # 8 MB: multipart


def test_two_writers_of_one_key_leave_one_whole_entry_and_readers_never_see_part_of_one(
    s3_cache_url, tmp_path, monkeypatch
):
    spawn = multiprocessing.get_context("spawn")
    writers = [
        spawn.Process(
            target=_store_repeatedly,
            args=(s3_cache_url, str(tmp_path / f"w{value}"), value, 4),
        )
        for value in (1, 2)
    ]
    reader = on_node(s3_cache_url, "reader", tmp_path, monkeypatch)
    seen, problems = [], []

    def read() -> None:
        while any(w.is_alive() for w in writers):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                hit = reader.get("contested")
            problems.extend(str(w.message) for w in caught)
            if hit is not None:
                seen.append(float(hit.value[0]))
                assert np.all(hit.value == hit.value[0])
                reader.storage.discard_copy("contested")  # read the bucket again next time

    for writer in writers:
        writer.start()
    polling = threading.Thread(target=read)
    polling.start()
    for writer in writers:
        writer.join(timeout=120)
    polling.join(timeout=120)
    assert all(w.exitcode == 0 for w in writers)
    assert problems == [] and seen, (problems, seen)
    assert set(seen) <= {1.0, 2.0}
    fresh = on_node(s3_cache_url, "fresh", tmp_path, monkeypatch)
    final = fresh.get("contested").value
    assert final[0] in (1.0, 2.0) and np.all(final == final[0])
    assert [e.key for e in fresh.entries()] == ["contested"]


def test_the_index_is_shared_by_drivers_and_rebuilt_from_the_bucket(
    s3_cache_url, tmp_path, monkeypatch
):
    blob = np.zeros(100_000, dtype=np.uint8)
    a = on_node(s3_cache_url, "a", tmp_path, monkeypatch)
    b = on_node(s3_cache_url, "b", tmp_path, monkeypatch)
    put(a, "cheap", blob, cost=0.1)
    put(b, "dear", blob, cost=100.0)
    put(a, "kept", blob, cost=0.01)
    b.pin(["kept"], owner="study one/1")  # pinned on one driver, respected by the other
    assert {p.key for p in a.prefixes(["L"])} == {"cheap", "dear", "kept"}
    size = a.info("dear").size_bytes
    evicted = a.evict(max_bytes=int(2.5 * size))
    assert [e.key for e in evicted] == ["cheap"]
    assert {e.key for e in b.entries()} == {"dear", "kept"}
    assert b.get("cheap") is None

    shutil.rmtree(tmp_path / "a")  # a node loses its local index and copies
    rebuilt = on_node(s3_cache_url, "a", tmp_path, monkeypatch)
    assert {e.key: e.pinned for e in rebuilt.entries()} == {"dear": False, "kept": True}
    assert rebuilt.get("dear") is not None
    assert rebuilt.unpin("study one/1") == 1 and not any(e.pinned for e in b.entries())
    assert bucket_paths(s3_cache_url, "index/pins") == []


def test_a_byte_budget_and_the_local_copy_bound_hold(s3_cache_url, tmp_path, monkeypatch):
    blob = np.zeros(100_000, dtype=np.uint8)
    size = put(on_node(s3_cache_url, "probe", tmp_path, monkeypatch), "x", blob).size_bytes
    StageCache(s3_cache_url, secret=SECRET_A).clear()
    cache = on_node(s3_cache_url, "a", tmp_path, monkeypatch, max_bytes=int(2.5 * size))
    for key in ("old", "used", "filler"):
        put(cache, key, blob, cost=50.0 if key == "filler" else 1.0)
    assert {e.key for e in cache.entries()} == {"used", "filler"}
    assert len(bucket_paths(s3_cache_url, "objects")) == 2

    reader = on_node(s3_cache_url, "b", tmp_path, monkeypatch, local_max_bytes=int(1.5 * size))
    reader.get("used")
    reader.get("filler")
    copies = list((tmp_path / "b").rglob("*.joblib"))
    assert [p.stem for p in copies] == ["filler"]  # the least recently used copy went
    assert reader.get("used") is not None  # and is fetched again when needed


def test_the_cache_commands_work_on_a_bucket(s3_cache_url, tmp_path, monkeypatch):
    cache = on_node(s3_cache_url, "a", tmp_path, monkeypatch)
    put(cache, "one", [1], cost=2.0)
    put(cache, "two", [2], cost=3.0)
    cache.get("one")
    cache.pin(["two"], owner="study:sweep")
    env = {**os.environ, "MEMOTUNE_CACHE_SECRET": SECRET_A}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "memotune", "cache", *args, "--cache", s3_cache_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    stats = cli("stats")
    assert stats.returncode == 0, stats.stderr
    assert "2 entries" in stats.stdout and "1 hits" in stats.stdout and "1 pinned" in stats.stdout
    listing = cli("ls")
    assert "one" in listing.stdout and "two" in listing.stdout
    assert cli("unpin", "--study", "sweep").returncode == 0
    assert cli("prune", "--max-bytes", "1").returncode == 0
    assert cache.entries() == []
    put(cache, "three", [3])
    assert cli("clear", "--yes").returncode == 0
    assert bucket_paths(s3_cache_url, "objects") == []
    emptied = cli("stats")
    assert emptied.returncode == 0 and "0 entries" in emptied.stdout  # cleared, still a cache
    nowhere = subprocess.run(
        [sys.executable, "-m", "memotune", "cache", "stats", "--cache", s3_cache_url + "-none"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert nowhere.returncode != 0 and "no stage cache at s3://" in nowhere.stderr


def test_a_prefix_computed_on_one_node_is_a_hit_on_another_with_no_folder_in_common(
    s3_cache_url, tmp_path
):
    script = Path(__file__).with_name("s3_cluster_sweep.py")
    env = {**os.environ, "MEMOTUNE_CACHE_SECRET": SECRET_A}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "work"), s3_cache_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads((tmp_path / "work" / "result.json").read_text())
    node_a, node_b = outcome["nodes"]["node_a"][:8], outcome["nodes"]["node_b"][:8]
    trials = outcome["trials"]
    assert [t["status"] for t in trials] == ["completed"] * 5
    computed = [t["stages"][0] for t in trials if not t["stages"][0]["hit"]]
    assert len(computed) == len({t["a"] for t in trials}) < len(trials)  # each prefix once
    assert all(node_a in s["node"] for s in computed)
    reused = [t for t in trials if t["stages"][0]["hit"]]
    assert reused and all(node_b in t["stages"][1]["node"] for t in reused)
    assert all(node_b in t["stages"][0]["node"] for t in reused)  # loaded there, from S3
    # node A kept copies of what it made; node B fetched its own (A's folder is hidden from B)
    assert {s["key"] for s in computed} <= {
        name.removesuffix(".joblib") for name in outcome["a_local"]
    }


def test_a_url_no_storage_library_knows_is_named_in_one_error():
    with pytest.raises(ValueError, match="cannot open a stage cache at foo://bucket/c: .*foo"):
        StageCache("foo://bucket/c", secret=SECRET_A)
