"""Logging off the study's critical path: jobs run in order on one background thread.

A job that fails is kept and tried again. When the target does not answer
either, the outbox goes offline: it warns once, keeps the queue, checks back
with a growing pause (at most a few seconds), and logs everything that piled
up when the target is back. A job that keeps failing while the target is up
is dropped with a warning, so one bad item cannot block the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("memotune.tracking")


class GiveUp(Exception):
    """Raised by a job when nothing more can be logged (the queue is dropped)."""


@dataclass
class Job:
    label: str  # what it logs, for messages: "trial 7", "the study summary"
    run: Callable[[], None]
    key: str | None = None  # a queued job with the same key is replaced by a newer one
    failures: int = 0  # failures while the target was up


class Outbox:
    def __init__(
        self,
        target: str,
        reachable: Callable[[], bool],
        *,
        max_failures: int = 5,
        max_pause: float = 5.0,
    ) -> None:
        self.target = target
        self.reachable = reachable
        self.max_failures = max_failures
        self.max_pause = max_pause
        self.offline = False
        self.dropped: list[str] = []
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_down = 0.0  # when the target was last found down
        self._job_started = 0.0  # when the running job started
        self._thread = threading.Thread(target=self._loop, name="memotune-tracking", daemon=True)
        self._thread.start()

    def put(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                return
            if job.key is not None:
                queued = [j for j in list(self._jobs)[1:] if j.key == job.key]
                for old in queued:  # never the head: it may be running
                    self._jobs.remove(old)
            self._jobs.append(job)
            self._cond.notify_all()

    def pending(self) -> list[str]:
        """Labels of the jobs not done yet, the running one first."""
        with self._cond:
            return [job.label for job in self._jobs]

    def flush(self, timeout: float, stuck_after: float = 3.0) -> list[str]:
        """Wait until every job is done, the target was found down since this call began,
        or ``timeout`` seconds passed; return the labels of the jobs left. A job running
        longer than ``stuck_after`` seconds (a hung server) makes this call check the
        target itself."""
        began = time.monotonic()
        checked = began
        while True:
            with self._cond:
                if not self._jobs or self._closed:
                    break
                if self.offline and self._last_down >= began:
                    break
                left = began + timeout - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.25))
                now = time.monotonic()
                stuck = self._jobs and now - self._job_started > stuck_after
            if stuck and now - checked > stuck_after:
                checked = now
                if not self.reachable():
                    with self._cond:
                        self.offline = True
                        self._last_down = time.monotonic()
        with self._cond:
            return [job.label for job in self._jobs]

    def close(self) -> None:
        """Stop after the running job; whatever is queued is not logged."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        pause = 0.5
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._jobs[0]
                self._job_started = time.monotonic()
            try:
                job.run()
            except GiveUp as error:
                self._give_up(str(error))
                return
            except Exception as error:  # noqa: BLE001 - tracking must never stop the study
                pause = self._failed(job, error, pause)
                continue
            with self._cond:
                if self._jobs and self._jobs[0] is job:
                    self._jobs.popleft()
                if self.offline:
                    self.offline = False
                    log.warning(
                        "memotune: %s is back; logging the %d item(s) queued meanwhile",
                        self.target,
                        len(self._jobs) + 1,
                    )
                self._cond.notify_all()
            pause = 0.5

    def _failed(self, job: Job, error: Exception, pause: float) -> float:
        """Handle a failed job; return the next pause."""
        up = self.reachable()
        with self._cond:
            if not up:
                self._last_down = time.monotonic()
                if not self.offline:
                    self.offline = True
                    log.warning(
                        "memotune: %s does not answer (%s); tuning goes on, and the "
                        "runs will be logged when it is back",
                        self.target,
                        _brief(error),
                    )
            else:
                job.failures += 1
                if job.failures >= self.max_failures:
                    self._jobs.remove(job)
                    self.dropped.append(job.label)
                    log.warning(
                        "memotune: could not log %s to %s: %s",
                        job.label,
                        self.target,
                        _brief(error),
                    )
            self._cond.notify_all()
            self._cond.wait(pause)  # woken early by close()
        return min(pause * 2, self.max_pause)

    def _give_up(self, reason: str) -> None:
        with self._cond:
            self.dropped.extend(job.label for job in self._jobs)
            self._jobs.clear()
            self._closed = True
            self._cond.notify_all()
        log.warning("memotune: tracking to %s is off for this study: %s", self.target, reason)


def _brief(error: Exception) -> str:
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
