"""Lost nodes and retried stages, told in memotune's words.

Ray runs a stage task again when its worker process or node dies (``RayRunner``'s
``max_retries``) and tells the driver in its own way: a notice per retried task
and, for a lost node, the last twenty lines of its raylet's log. While a
sweep runs, :func:`ray_notices_to` writes those notices to a log file instead of
the terminal, and :class:`LossWatch` tells the user in one line per lost node and
one per stage that runs again (on the ``memotune.cluster`` logger).
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
from ray.exceptions import RayError

log = logging.getLogger("memotune.cluster")

#: Ray's notices that memotune tells in its own words.
TOLD = re.compile(
    r"Raylet is terminated|A worker died or was killed|The node with node id"
    r"|Task \S+ failed\. There are \d+ retries remaining"
)

#: How often (seconds) the driver looks for lost nodes and retried stages.
WATCH_SECONDS = 1.0
#: How long the end of a sweep waits for the last news of retried stages.
FINAL_ANSWER_SECONDS = 5.0
#: How long a stage task waits for the sweep to note where it runs.
TELL_SECONDS = 10.0


def notices_log() -> Path:
    """Where Ray's notices go: beside Ray's own logs of this session."""
    context = ray.get_runtime_context()
    return Path(context.get_temp_dir(), context.get_session_name(), "logs", "memotune-notices.log")


@contextmanager
def ray_notices_to(path: Path) -> Iterator[None]:
    """Write Ray's notices about lost nodes and retried tasks to ``path``, not the terminal.

    Ray prints what its error channel brings from a thread of its own, with no
    setting for where; for as long as the block runs, this wraps the function
    that thread calls. Everything else (the stages' output, Ray's other
    warnings) still reaches the terminal.
    """
    from ray._private import worker

    original = worker.print_to_stdstream
    said = False

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        nonlocal said
        lines = data.get("lines") or []
        if not lines or not all(TOLD.match(line) for line in lines):
            original(data, ignore_prefix)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.writelines(f"{stamp} {line.rstrip()}\n" for line in lines)
        if not said:
            said = True
            log.warning("Ray's own report of lost nodes and retried tasks: %s", path)

    worker.print_to_stdstream = print_to_stdstream
    try:
        yield
    finally:
        worker.print_to_stdstream = original


@ray.remote(num_cpus=0)
class Attempts:
    """Where each trial's running stage task runs. A trial's stage tasks run one after
    another, so a task that starts ends the trial's one before; a task that starts
    while it is still its trial's running one lost its worker or node."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[str, str]] = {}  # trial → task name, node id
        self.again: list[tuple[str, str, str]] = []  # task, node it left, node it runs on

    def start(self, task: str, node: str) -> None:
        trial = _trial(task)
        if trial in self.running and self.running[trial][0] == task:
            self.again.append((task, self.running[trial][1], node))
        self.running[trial] = (task, node)

    def news(self, finished: list[str]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
        """Forget the ``finished`` trials; return the running tasks (name → node) and
        the tasks started again since the last call."""
        for trial in finished:
            self.running.pop(trial, None)
        again, self.again = self.again, []
        return dict(self.running.values()), again


def started(attempts: str, task: str, node: str) -> None:
    """In a stage task: tell the sweep's :class:`Attempts` (by name) where ``task`` runs,
    and wait until it knows (a worker killed before its message left would look like a
    first attempt on retry); if it cannot be told, the stage runs all the same."""
    try:
        ray.get(_attempts(attempts).start.remote(task, node), timeout=TELL_SECONDS)
    except (ValueError, RayError):
        pass


@functools.cache
def _attempts(name: str) -> ray.actor.ActorHandle:
    """A worker looks the sweep's actor up once (a handle passed with every task
    would cost a millisecond a stage)."""
    return ray.get_actor(name)


class LossWatch:
    """Says which nodes were lost and which stages run again, one line each.

    The stage tasks tell the :class:`Attempts` actor named :attr:`name` where each
    attempt starts. A node is lost when Ray counts it dead or, sooner (Ray's count
    lags by many seconds), when a stage left it for a new attempt and its raylet no
    longer answers.
    """

    def __init__(self) -> None:
        self.name = f"memotune-attempts-{uuid.uuid4().hex}"
        head = {"node:__internal_head__": 0.001}  # lives as long as the cluster does
        self._actor = Attempts.options(name=self.name, resources=head).remote()
        self.lost = {n["NodeID"] for n in ray.nodes() if not n["Alive"]}  # before the sweep
        self._finished: list[str] = []  # trials to forget at the next question
        self._news: ray.ObjectRef | None = None
        self._when = 0.0

    def finished(self, trial_id: int) -> None:
        self._finished.append(str(trial_id))

    def look(self) -> None:
        """Tell what happened since the last look; never waits: at most once per
        ``WATCH_SECONDS`` it asks the actor, and reads the answer at a later look."""
        if time.monotonic() - self._when < WATCH_SECONDS:
            return
        self._when = time.monotonic()
        if self._news is None:
            self._ask()
        elif ray.wait([self._news], timeout=0)[0]:
            self._read()

    def _ask(self) -> None:
        self._news = self._actor.news.remote(self._finished)
        self._finished = []

    def _read(self, timeout: float | None = None) -> None:
        try:
            running, again = ray.get(self._news, timeout=timeout)
        except RayError:  # no news this time (never a reason to stop the sweep)
            return
        finally:
            self._news = None
        done = set(self._finished)  # finished since the question: not running any more
        running = {task: node for task, node in running.items() if _trial(task) not in done}
        self._tell(running, again)

    def _tell(self, running: dict[str, str], again: list[tuple[str, str, str]]) -> None:
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        left = {node for _, node, _ in again} - self.lost
        left = {node for node in left if node in nodes and not _answers(nodes[node])}
        dead = {node for node, info in nodes.items() if not info["Alive"]}
        for node in sorted((left | dead) - self.lost):
            count = sum(on == node for on in running.values())
            count += sum(before == node for _, before, _ in again)
            stages = "stage" if count == 1 else "stages"
            log.warning("node %s lost; %d running %s retried", _label(nodes, node), count, stages)
        self.lost |= left | dead
        for task, _, now in again:
            log.warning("%s retried on node %s", _stage(task), _label(nodes, now))

    def close(self) -> None:
        """Tell what the last looks had not read yet (a sweep may end between a stage's
        retry and the next look), then stop watching."""
        for _ in range(2):  # the answer on its way, then one to a question asked now
            if self._news is None:
                self._ask()
            self._read(timeout=FINAL_ANSWER_SECONDS)
        ray.kill(self._actor)


def _label(nodes: dict[str, dict], node: str) -> str:
    """A node as the stage records name it: host, address and the start of its id."""
    info = nodes.get(node, {})
    host, address = info.get("NodeManagerHostname", "?"), info.get("NodeManagerAddress", "?")
    return f"{host} {address} ({node[:8]})"


def _answers(node: dict) -> bool:
    """Whether the node's raylet still accepts a connection."""
    try:
        address = (node["NodeManagerAddress"], node["NodeManagerPort"])
        socket.create_connection(address, timeout=1.0).close()
    except OSError:
        return False
    return True


def _trial(task: str) -> str:
    """The trial of a stage task named ``memotune:<trial>:<stage>``."""
    return task.split(":", 2)[1]


def _stage(task: str) -> str:
    """A stage task's name as ``trial 3: stage 'train'``."""
    _, trial, stage = task.split(":", 2)
    return f"trial {trial}: stage '{stage}'"
