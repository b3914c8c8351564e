"""Differentiable, asynchronous uneven all-to-all for token dispatch.

Expert parallelism moves tokens with two all-to-alls per MoE layer (GShard,
DeepSpeed-MoE): the per-expert token counts go first (an even all-to-all of
integers), then the tokens themselves with an uneven ``all_to_all_single``
whose split sizes those counts give; outputs come back the same way.

To overlap communication with computation (Lancet, MLSys 2024) the transfer
is split in two autograd nodes: :func:`start` launches the all-to-all and
returns the (not yet filled) receive buffer, :func:`finish` waits for it.
Backward mirrors that: ``finish``'s backward launches the reverse transfer of
the gradient (passing its own gradient on only as a stand-in), and
``start``'s backward first flushes the queued weight gradients (see
:mod:`.deferred`), then waits and returns the transferred gradient. :class:`CommStats`
records how long the host blocked in those waits; comparing it with and
without overlap shows how much communication was hidden. It also records
when each transfer was launched and when it completed (a callback on the
work's future), so ``in_flight`` - ``wait`` is the time communication was in
flight while the host computed. (On CUDA/NCCL, ``wait`` only orders streams
and completion is stream completion, so there these are host-side figures.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .deferred import WeightGradQueue


@dataclass
class CommStats:
    """Seconds the host spent blocked waiting for all-to-alls, when transfers were in
    flight, and how many there were."""

    forward_wait: float = 0.0
    backward_wait: float = 0.0
    transfers: int = 0
    bytes_sent: int = 0
    intervals: list[tuple[float, float]] = field(default_factory=list)
    trace: list[str] | None = None  # when a list: the schedule, one event per entry

    def note(self, event: str) -> None:
        if self.trace is not None:
            self.trace.append(event)

    @property
    def wait(self) -> float:
        return self.forward_wait + self.backward_wait

    @property
    def in_flight(self) -> float:
        """Seconds during which at least one transfer was in flight."""
        total, reach = 0.0, float("-inf")
        for began, ended in sorted(self.intervals):
            if ended > reach:
                total += ended - max(began, reach)
                reach = ended
        return total

    @property
    def hidden(self) -> float:
        """Seconds of communication the host did not wait for (overlapped with compute)."""
        return max(0.0, self.in_flight - self.wait)

    def record(self, work: Any, sent: Tensor) -> None:
        """Count a launched transfer and note when it completes."""
        self.transfers += 1
        self.bytes_sent += sent.numel() * sent.element_size()
        launched = time.perf_counter()

        def completed(_: Any) -> None:
            self.intervals.append((launched, time.perf_counter()))

        work.get_future().then(completed)

    def reset(self) -> None:
        self.forward_wait = self.backward_wait = 0.0
        self.transfers = self.bytes_sent = 0
        self.intervals = []
        if self.trace is not None:
            self.trace.clear()


@dataclass
class Transfer:
    """One uneven all-to-all: how many rows go to and come from each rank."""

    send_splits: list[int]
    recv_splits: list[int]
    group: Any = None
    stats: CommStats | None = None
    queue: WeightGradQueue | None = None
    label: str = ""
    _handle: Any = field(default=None, repr=False)
    _grad_handle: Any = field(default=None, repr=False)
    _grad_x: Tensor | None = field(default=None, repr=False)
    _keepalive: Tensor | None = field(default=None, repr=False)


def exchange_counts(send_counts: Tensor, group: Any = None) -> Tensor:
    """Even all-to-all of ``[W, n]`` integer counts: row ``r`` goes to rank ``r``;
    row ``r`` of the result came from rank ``r``."""
    send = send_counts.contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv


def _note(transfer: Transfer, event: str) -> None:
    if transfer.stats is not None:
        transfer.stats.note(f"{event} {transfer.label}")


def _timed_wait(handle: Any) -> float:
    began = time.perf_counter()
    handle.wait()
    return time.perf_counter() - began


class _Start(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, transfer: Transfer) -> Tensor:
        x = x.contiguous()
        out = x.new_empty((sum(transfer.recv_splits), *x.shape[1:]))
        transfer._keepalive = x
        transfer._handle = dist.all_to_all_single(
            out,
            x,
            output_split_sizes=transfer.recv_splits,
            input_split_sizes=transfer.send_splits,
            group=transfer.group,
            async_op=True,
        )
        if transfer.stats is not None:
            transfer.stats.record(transfer._handle, x)
        _note(transfer, "launch")
        ctx.transfer = transfer
        return out

    @staticmethod
    def backward(ctx: Any, _launched: Tensor):
        transfer: Transfer = ctx.transfer
        if transfer.queue is not None and transfer.queue.flush():
            _note(transfer, "weight grads during")  # while the transfer is in flight
        waited = _timed_wait(transfer._grad_handle)
        _note(transfer, "wait grad")
        if transfer.stats is not None:
            transfer.stats.backward_wait += waited
        grad_x = transfer._grad_x
        transfer._grad_handle = transfer._grad_x = transfer._keepalive = None
        return grad_x, None


class _Finish(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, out: Tensor, transfer: Transfer) -> Tensor:
        waited = _timed_wait(transfer._handle)
        _note(transfer, "wait")
        if transfer.stats is not None:
            transfer.stats.forward_wait += waited
        transfer._handle = transfer._keepalive = None
        ctx.transfer = transfer
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        transfer: Transfer = ctx.transfer
        grad_out = grad_out.contiguous()
        grad_x = grad_out.new_empty((sum(transfer.send_splits), *grad_out.shape[1:]))
        transfer._keepalive = grad_out
        transfer._grad_handle = dist.all_to_all_single(
            grad_x,
            grad_out,
            output_split_sizes=transfer.send_splits,
            input_split_sizes=transfer.recv_splits,
            group=transfer.group,
            async_op=True,
        )
        transfer._grad_x = grad_x
        if transfer.stats is not None:
            transfer.stats.record(transfer._grad_handle, grad_out)
        _note(transfer, "launch grad")
        return grad_out, None  # a stand-in: start's backward returns the transferred grad_x


def start(x: Tensor, transfer: Transfer) -> Tensor:
    """Launch the all-to-all of ``x``'s rows; the result is valid after :func:`finish`."""
    return _Start.apply(x, transfer)


def finish(buffer: Tensor, transfer: Transfer) -> Tensor:
    """Wait for the all-to-all that :func:`start` launched and return its rows."""
    return _Finish.apply(buffer, transfer)


def all_to_all(x: Tensor, transfer: Transfer) -> Tensor:
    """A blocking, differentiable uneven all-to-all."""
    return finish(start(x, transfer), transfer)
