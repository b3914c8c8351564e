"""Lancet's backward overlap: a linear layer that returns its input gradient first
and queues its weight gradient.

In an expert-parallel backward pass the input gradient of the experts' first
linear layer is what the dispatch all-to-all sends back; the weight gradients
are needed only by the optimizer. :class:`DeferredLinear` computes the input
gradient at once and pushes the weight-gradient work onto a
:class:`WeightGradQueue`; the all-to-all's backward launches the transfer and
flushes the queue while it is in flight (Jiang et al., Lancet, MLSys 2024).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F


class WeightGradQueue:
    """Weight-gradient work waiting for a communication to hide behind."""

    def __init__(self) -> None:
        self._pending: list[Callable[[], None]] = []

    def push(self, work: Callable[[], None]) -> None:
        self._pending.append(work)

    def flush(self) -> int:
        """Run all queued work (oldest first); return how many items ran."""
        done = 0
        while self._pending:
            self._pending.pop(0)()
            done += 1
        return done

    def __len__(self) -> int:
        return len(self._pending)


def _accumulate(param: Tensor, grad: Tensor) -> None:
    if not param.is_leaf:
        raise RuntimeError("DeferredLinear accumulates weight gradients into leaf parameters only")
    with torch.no_grad():
        if param.grad is None:
            param.grad = grad.detach().clone()
        else:
            param.grad.add_(grad)


class _DeferredLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, queue: WeightGradQueue):
        ctx.save_for_backward(x, weight)
        ctx.bias = bias
        ctx.queue = queue
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        bias = ctx.bias
        grad_in = grad_out @ weight if ctx.needs_input_grad[0] else None

        def weight_grad() -> None:
            flat_out = grad_out.reshape(-1, grad_out.shape[-1])
            _accumulate(weight, flat_out.t() @ x.reshape(-1, x.shape[-1]))
            if bias is not None:
                _accumulate(bias, flat_out.sum(0))

        if weight.requires_grad:
            ctx.queue.push(weight_grad)
        return grad_in, None, None, None


def deferred_linear(
    x: Tensor, weight: Tensor, bias: Tensor | None, queue: WeightGradQueue
) -> Tensor:
    """``F.linear`` whose weight (and bias) gradient is queued on ``queue`` in backward."""
    return _DeferredLinearFn.apply(x, weight, bias, queue)
