"""A few local processes joined in one ``torch.distributed`` group, kept alive between jobs.

Tests and benchmarks run many short multi-process checks; starting processes
(and importing torch in them) costs seconds each time on a small machine, so
:class:`LocalGroup` starts ``world`` processes once and runs picklable
callables on every rank, returning each rank's result. A rank that raises
fails the job with its traceback; a collective left waiting by it times out
after ``timeout`` seconds, and the group is restarted before the next job.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class GroupJobFailed(RuntimeError):
    """A job raised on some rank (the message holds that rank's traceback)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(rank: int, world: int, port: int, backend: str, timeout: float, threads: int,
           tasks: Any, results: Any) -> None:  # fmt: skip
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout),
    )
    try:
        while (task := tasks.get()) is not None:
            fn, args, kwargs = task
            try:
                results.put((rank, True, fn(*args, **kwargs)))
            except BaseException:
                results.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class LocalGroup:
    """``world`` local processes in a gloo (or NCCL) group; ``run(fn, ...)`` on all ranks."""

    def __init__(
        self, world: int = 2, backend: str = "gloo", timeout: float = 60.0, threads: int = 1
    ) -> None:
        self.world = world
        self.backend = backend
        self.timeout = timeout
        self.threads = threads
        self._processes: list[Any] = []
        self._tasks: list[Any] = []
        self._results: Any = None

    def __enter__(self) -> LocalGroup:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        context = mp.get_context("spawn")
        port = _free_port()
        self._results = context.Queue()
        self._tasks = [context.Queue() for _ in range(self.world)]
        self._processes = [
            context.Process(
                target=_serve,
                args=(
                    rank,
                    self.world,
                    port,
                    self.backend,
                    self.timeout,
                    self.threads,
                    self._tasks[rank],
                    self._results,
                ),  # fmt: skip
                daemon=True,
            )
            for rank in range(self.world)
        ]
        for process in self._processes:
            process.start()

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """Run ``fn(*args, **kwargs)`` on every rank; return the results by rank."""
        if not self._processes or not all(p.is_alive() for p in self._processes):
            self.close()
            self.start()
        for queue in self._tasks:
            queue.put((fn, args, kwargs))
        outcomes: dict[int, tuple[bool, Any]] = {}
        while len(outcomes) < self.world:
            rank, ok, value = self._results.get(timeout=self.timeout * 3)
            outcomes[rank] = (ok, value)
        failed = [(rank, value) for rank, (ok, value) in sorted(outcomes.items()) if not ok]
        if failed:
            self.close()  # a failed job may leave the process group unusable
            rank, trace = failed[0]
            raise GroupJobFailed(f"{getattr(fn, '__name__', fn)} failed on rank {rank}:\n{trace}")
        return [outcomes[rank][1] for rank in range(self.world)]

    def close(self) -> None:
        for queue, process in zip(self._tasks, self._processes, strict=False):
            if process.is_alive():
                queue.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._processes = []
