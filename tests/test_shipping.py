"""Shipping user code to Ray's workers: the user's modules travel as files, imported by
path under the same names before anything of theirs is unpickled."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memotune.pipelines.shipping import UserCode, UserCodeError
from memotune.stages.distributed import ddp_trainer

USER_FILE = """
from dataclasses import dataclass

@dataclass
class Box:
    value: int

def factory():
    return Box(42)
"""


def load_user_file(tmp_path, name: str):
    source = tmp_path / f"{name}.py"
    source.write_text(USER_FILE)
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_callable_a_closure_holds_is_found_with_its_file(tmp_path):
    module = load_user_file(tmp_path, "memotune_test_user_closure_0123")
    factory = module.factory

    def stage_fn(upstream):  # what a stage factory makes: a closure over user code
        return factory()

    try:
        code = UserCode.of(stage_fn)
    finally:
        del sys.modules[module.__name__]
    assert dict(code.modules) == {
        module.__name__: str((tmp_path / f"{module.__name__}.py").resolve()),
        __name__: __file__,  # this test module: on pytest's sys.path only
    }


def test_installed_modules_are_imported_by_name():
    assert UserCode.of(F.cross_entropy, torch.nn.Linear, np.mean, ddp_trainer).modules == ()


def test_a_fresh_process_imports_the_files_and_unpickles_the_users_objects(tmp_path):
    """What a Ray worker does: the class keeps its identity, so joblib can pickle the
    object again (into the cache) and load it anywhere."""
    module = load_user_file(tmp_path, "memotune_test_user_fresh_0123")
    try:
        payload = pickle.dumps(module.factory())  # by reference to the module's name
        code = UserCode.of(module.factory)
    finally:
        del sys.modules[module.__name__]
    (tmp_path / "payload.pkl").write_bytes(payload)
    (tmp_path / "code.pkl").write_bytes(pickle.dumps(code))
    script = textwrap.dedent(
        f"""
        import pickle, sys
        from pathlib import Path
        folder = Path({str(tmp_path)!r})
        code = pickle.loads((folder / "code.pkl").read_bytes())
        code.load()
        box = pickle.loads((folder / "payload.pkl").read_bytes())
        assert type(box) is sys.modules["memotune_test_user_fresh_0123"].Box
        print(pickle.loads(pickle.dumps(box)).value)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd="/", timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_a_file_a_worker_cannot_read_is_a_clear_error(tmp_path):
    code = UserCode((("memotune_test_gone_0123", str(tmp_path / "gone.py")),))
    with pytest.raises(UserCodeError, match="must be at the same path on every node"):
        code.load()
    assert "memotune_test_gone_0123" not in sys.modules
