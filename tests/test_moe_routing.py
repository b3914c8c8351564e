"""MoE gating, experts and Lancet's deferred linear, in one process."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from memotune.stages.moe.deferred import WeightGradQueue, deferred_linear
from memotune.stages.moe.dispatch import LocalDispatch, MoERuntime, assignments, combine
from memotune.stages.moe.experts import ExpertFFN, run_grouped
from memotune.stages.moe.gating import TopKRouter, expert_capacity, load_balancing_loss, route
from memotune.stages.moe.model import init_parameters


def probs_for(choices: list[list[int]], n_experts: int) -> torch.Tensor:
    """Router probabilities whose ranking per token is ``choices`` (first is most likely)."""
    probs = torch.full((len(choices), n_experts), 0.01, dtype=torch.float64)
    for t, ranked in enumerate(choices):
        for place, expert in enumerate(ranked):
            probs[t, expert] = 0.6 - 0.2 * place
    return probs / probs.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    ("tokens", "experts", "k", "factor", "expected"),
    [
        (8, 4, 1, 1.0, 2),
        (8, 4, 2, 1.0, 4),
        (10, 4, 1, 1.25, 4),
        (7, 3, 2, 1.5, 7),
        (5, 4, 2, None, 10),
    ],
)
def test_capacity_is_ceil_k_tokens_over_experts_times_factor(tokens, experts, k, factor, expected):
    assert expert_capacity(tokens, experts, k, factor) == expected
    if factor is not None:
        assert expected == math.ceil(k * tokens / experts * factor)


def test_top1_drops_by_position_beyond_capacity():
    # 6 tokens, 3 experts, capacity ceil(6/3 * 1.0) = 2; four tokens prefer expert 0
    probs = probs_for([[0], [0], [1], [0], [0], [2]], 3)
    routing = route(probs, top_k=1, capacity_factor=1.0)
    assert routing.capacity == 2
    assert routing.expert[:, 0].tolist() == [0, 0, 1, 0, 0, 2]
    assert routing.kept[:, 0].tolist() == [True, True, True, False, False, True]
    # Switch: the kept token's weight is its router probability; a dropped one weighs 0
    kept_probs = probs[torch.arange(6), routing.expert[:, 0]] * routing.kept[:, 0]
    torch.testing.assert_close(routing.weight[:, 0], kept_probs)
    assert routing.load.tolist() == [2, 1, 1]


def test_top2_admits_all_first_choices_before_second_choices():
    # capacity ceil(2*4/4 * 1.0) = 2 per expert
    probs = probs_for([[0, 1], [1, 0], [0, 1], [0, 2]], 4)
    routing = route(probs, top_k=2, capacity_factor=1.0)
    assert routing.capacity == 2
    # expert 0: first choices of tokens 0, 2 fill it, token 3's first choice and
    # token 1's second choice are dropped; expert 1: token 1 (first), token 0 (second)
    assert routing.kept.tolist() == [[True, True], [True, False], [True, False], [False, True]]
    # GShard: the two chosen probabilities are renormalised before dropping
    chosen = probs.gather(1, routing.expert)
    torch.testing.assert_close(routing.weight, chosen / chosen.sum(-1, keepdim=True) * routing.kept)


def test_load_balancing_loss_is_one_when_balanced_and_e_when_collapsed():
    n_experts = 4
    uniform = torch.full((8, n_experts), 1 / n_experts, dtype=torch.float64)
    balanced = torch.tensor([[t % 4, (t + 1) % 4] for t in range(8)])
    for k in (1, 2):
        loss = load_balancing_loss(uniform, balanced[:, :k], k)
        assert float(loss) == pytest.approx(1.0)
    collapsed = torch.zeros(8, n_experts, dtype=torch.float64)
    collapsed[:, 0] = 1.0
    loss = load_balancing_loss(collapsed, torch.zeros(8, 1, dtype=torch.long), 1)
    assert float(loss) == pytest.approx(n_experts)


def test_load_balancing_loss_matches_its_formula_and_has_a_gradient():
    torch.manual_seed(0)
    logits = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    probs = torch.softmax(logits, -1)
    routing = route(probs, top_k=2, capacity_factor=1.0)
    counts = torch.bincount(routing.expert.flatten(), minlength=5).double()
    expected = 5 * (probs.mean(0) * counts / (16 * 2)).sum()
    torch.testing.assert_close(routing.aux_loss, expected)
    routing.aux_loss.backward()
    assert logits.grad.abs().sum() > 0


def test_router_rejects_bad_settings_with_a_clear_message():
    with pytest.raises(ValueError, match="top_k must be 1 or 2"):
        TopKRouter(8, 4, top_k=3)
    with pytest.raises(ValueError, match="capacity_factor"):
        TopKRouter(8, 4, capacity_factor=0.0)


def test_local_moe_layer_equals_a_per_token_loop():
    torch.manual_seed(1)
    runtime = MoERuntime()
    router = TopKRouter(6, 3, top_k=2, capacity_factor=1.0).double()
    experts = torch.nn.ModuleDict({str(e): ExpertFFN(6, 10) for e in range(3)}).double()
    init_parameters(experts, seed=0)
    x = torch.randn(9, 6, dtype=torch.float64)
    routing = router(x)
    chosen = assignments(routing)
    out = combine(x, chosen, LocalDispatch(runtime)(x, chosen, experts))
    expected = torch.zeros_like(x)
    for t in range(9):
        for j in range(2):
            if routing.kept[t, j]:
                e = int(routing.expert[t, j])
                expected[t] += routing.weight[t, j] * experts[str(e)](x[t : t + 1])[0]
    torch.testing.assert_close(out, expected)
    assert runtime.expert_rows == int(routing.kept.sum())


def test_run_grouped_keeps_row_order_and_skips_idle_experts():
    calls = []

    def scale(factor):
        def fn(rows):
            calls.append(factor)
            return rows * factor

        return fn

    x = torch.arange(5.0)[:, None]
    index = torch.tensor([2, 0, 2, 0, 2])
    out = run_grouped(x, index, [scale(10), scale(20), scale(30)])
    assert out.flatten().tolist() == [0.0, 10.0, 60.0, 30.0, 120.0]
    assert calls == [10, 30]  # expert 1 had no rows


def test_deferred_linear_returns_input_grad_now_and_weight_grad_on_flush():
    torch.manual_seed(2)
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    queue = WeightGradQueue()
    y = deferred_linear(x, weight, bias, queue)
    (y.sin().sum()).backward()
    assert x.grad is not None and weight.grad is None and len(queue) == 1
    assert queue.flush() == 1
    x_ref = x.detach().clone().requires_grad_()
    w_ref = weight.detach().clone().requires_grad_()
    b_ref = bias.detach().clone().requires_grad_()
    F.linear(x_ref, w_ref, b_ref).sin().sum().backward()
    torch.testing.assert_close(y, F.linear(x_ref, w_ref, b_ref))
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(weight.grad, w_ref.grad)
    torch.testing.assert_close(bias.grad, b_ref.grad)
