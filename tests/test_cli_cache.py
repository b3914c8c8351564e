import json
import subprocess
import sys
from pathlib import Path

from memotune import Int, Pipeline, StageCache, run, stage
from memotune.cli import main


@stage(space={"n": Int(1, 100)})
def make(inputs, n):
    return bytes(n * 1000)


@stage
def size(blob):
    return float(len(blob))


def fill(cache_dir):
    pipe = Pipeline([make, size])
    for n in (10, 20, 30):
        run(pipe, {"make": {"n": n}}, cache=cache_dir)
    run(pipe, {"make": {"n": 10}}, cache=cache_dir)


def test_stats_ls_prune_clear(capsys):
    fill("c")
    assert main(["cache", "stats", "--cache", "c", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 6 and stats["hits"] == 2  # the rerun loaded size: 2 stages
    assert main(["cache", "ls", "--cache", "c", "--stage", "make"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("make") == 3 and '{"n": 20}' in listing
    assert main(["cache", "prune", "--cache", "c", "--max-bytes", "25KB"]) == 0
    assert "evicted" in capsys.readouterr().out
    assert StageCache("c").index.total_bytes() <= 25_000
    assert main(["cache", "clear", "--cache", "c", "--yes"]) == 0
    assert StageCache("c").stats().entries == 0


def test_python_dash_m_and_clear_errors():
    missing = subprocess.run(
        [sys.executable, "-m", "memotune", "cache", "stats", "--cache", "c"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no stage cache at c" in missing.stderr
    assert not (Path.cwd() / "c").exists()  # looking does not create a cache
    StageCache("c")
    ok = subprocess.run(
        [sys.executable, "-m", "memotune", "cache", "stats", "--cache", "c"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "0 entries" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "memotune", "cache", "prune", "--max-bytes", "12 parsecs"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not a size: '12 parsecs'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_unpin_releases_a_studys_pins_so_prune_can_evict(capsys):
    fill("c")
    cache = StageCache("c")
    kept = sorted(cache.index.keys())[:2]
    cache.pin(kept, owner="study:digits")
    cache.pin(kept[:1], owner="study:other")
    assert main(["cache", "prune", "--cache", "c", "--max-bytes", "0"]) == 0
    assert StageCache("c").index.keys() == set(kept)  # pinned ones stay
    assert main(["cache", "unpin", "--cache", "c", "--study", "digits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"unpinned": 2}
    assert main(["cache", "prune", "--cache", "c", "--max-bytes", "0"]) == 0
    assert StageCache("c").index.keys() == set(kept[:1])  # other's pin
    assert main(["cache", "unpin", "--cache", "c", "--all"]) == 0
    assert "released 1 pins" in capsys.readouterr().out
    assert main(["cache", "prune", "--cache", "c", "--max-bytes", "0"]) == 0
    assert not StageCache("c").index.keys()
