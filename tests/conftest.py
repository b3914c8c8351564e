"""Shared fixtures. Every test gets its own config folder (so the cache secret
never touches the user's) and a fresh working directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("MEMOTUNE_CACHE_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session: 2 CPUs, no dashboard; always a new
    local instance, never a ``ray start`` cluster that happens to run on the machine."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
