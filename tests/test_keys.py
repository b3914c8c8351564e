import subprocess
import sys
import textwrap

from memotune.pipelines import canonical_json, stage_key
from memotune.pipelines.keys import lineage_key


def test_canonical_json_is_sorted_compact_and_exact():
    assert canonical_json({"b": 0.1, "a": [1, True, None]}) == '{"a":[1,true,null],"b":0.1}'
    assert canonical_json({"x": 1 / 3}) == '{"x":0.3333333333333333}'
    assert canonical_json({"x": -0.0}) == canonical_json({"x": 0.0})


def test_keys_are_stable_across_processes():
    here = stage_key("train", "v1", {"lr": 0.1, "depth": 3}, "parent")
    code = textwrap.dedent(
        """
        from memotune.pipelines import stage_key
        print(stage_key("train", "v1", {"depth": 3, "lr": 0.1}, "parent"))
        """
    )
    env = {"PYTHONHASHSEED": "12345"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    assert out.stdout.strip() == here


def test_every_part_of_a_key_matters():
    base = stage_key("train", "v1", {"lr": 0.1}, "p")
    assert stage_key("train2", "v1", {"lr": 0.1}, "p") != base
    assert stage_key("train", "v2", {"lr": 0.1}, "p") != base
    assert stage_key("train", "v1", {"lr": 0.2}, "p") != base
    assert stage_key("train", "v1", {"lr": 0.1}, "q") != base
    assert lineage_key("", "train", "v1") != lineage_key("", "train", "v2")
