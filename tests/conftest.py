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


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server (moto's server mode) on 127.0.0.1 for the whole session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_cache_url(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket on the test S3 server, found where the AWS tools look
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, …); returns a cache URL in it."""
    import uuid

    import fsspec

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MEMOTUNE_CACHE_LOCAL", str(tmp_path / "node-local"))
    bucket = f"memotune-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/cache"
