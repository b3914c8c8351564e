import subprocess
import sys


def test_one_import_name_and_no_bare_top_level_modules(tmp_path):
    code = (
        "import importlib.util as u, memotune.pipelines, memotune.cache, memotune.tuner,"
        " memotune.stages\n"
        "from memotune import stage, Pipeline, Float, Int, Choice, run\n"
        "print([m for m in ('cache', 'stages', 'tuner', 'pipelines') if u.find_spec(m)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
