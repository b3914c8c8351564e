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
