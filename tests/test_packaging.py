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


def test_pyproject_ships_every_package_folder():
    """A non-editable install ships only the packages pyproject lists."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: root / path for name, path in settings["package-dir"].items()}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((name, *parts)))
    assert sorted(settings["packages"]) == sorted(found)
