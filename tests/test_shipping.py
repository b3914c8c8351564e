"""Shipping user code to Ray's workers: by value unless installed."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ray import cloudpickle
from torch import nn

from memotune.pipelines.shipping import ship_by_value
from memotune.stages.distributed import ddp_trainer


def mlp(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3))


def load_user_file(tmp_path, name: str):
    source = tmp_path / f"{name}.py"
    source.write_text("def factory():\n    return 42\n")
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_callable_a_closure_holds_travels_by_value(tmp_path):
    module = load_user_file(tmp_path, "memotune_test_user_closure_0123")

    factory = module.factory

    def stage_fn(upstream):  # what a stage factory makes: a closure over user code
        return factory()

    shipped = ship_by_value(stage_fn)
    try:
        assert set(shipped) == {module.__name__, __name__}  # the closure's and its own
        payload = cloudpickle.dumps(stage_fn)
    finally:
        for name in shipped:
            cloudpickle.unregister_pickle_by_value(sys.modules[name])
        del sys.modules[module.__name__]
    assert pickle.loads(payload)(None) == 42


def test_a_module_loaded_from_a_path_travels_by_value(tmp_path):
    source = tmp_path / "user_pipeline.py"
    source.write_text("def factory():\n    return 42\n")
    name = "memotune_test_user_pipeline_0123"
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    try:
        by_reference = cloudpickle.dumps(module.factory)
        ship_by_value({"loop": [module.factory]})
        by_value = cloudpickle.dumps(module.factory)
    finally:
        del sys.modules[name]
        cloudpickle.unregister_pickle_by_value(module)
    with pytest.raises(ModuleNotFoundError):  # what Ray's workers would hit
        pickle.loads(by_reference)
    assert pickle.loads(by_value)() == 42


def test_installed_modules_travel_by_reference_and_others_by_value():
    before = cloudpickle.list_registry_pickle_by_value()
    ship_by_value(F.cross_entropy, torch.nn.Linear, np.mean, ddp_trainer)
    assert cloudpickle.list_registry_pickle_by_value() == before
    assert __name__ not in before  # this test module: on pytest's sys.path only
    ship_by_value(mlp)
    try:
        assert __name__ in cloudpickle.list_registry_pickle_by_value()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
