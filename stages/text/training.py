"""Training a language model on a token stream, with or without a teacher, and measuring it.

Batches are random windows of the training stream drawn from a seeded
generator, so a run is a function of its settings. With a teacher, the loss
is Hinton et al.'s knowledge distillation: ``alpha · T² · KL(teacher_T ‖
student_T) + (1 − alpha) · cross-entropy``, both distributions softened by
the temperature ``T``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import model as lm
from .model import TinyLM


@dataclass(frozen=True)
class Schedule:
    """AdamW with linear warm-up over ``warmup`` of the horizon, then cosine decay to 10%
    at the horizon. The horizon is ``steps`` unless given: a run of fewer steps than its
    horizon is the first ``steps`` of the longer run (what makes steps a fidelity)."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0
    horizon: int | None = None

    def factor(self, step: int) -> float:
        span = self.horizon or self.steps
        warm = max(1, round(self.warmup * span))
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, span - warm)
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Distillation:
    """How the teacher's outputs enter the loss."""

    teacher: TinyLM
    temperature: float
    alpha: float


def random_windows(
    stream: np.ndarray, length: int, count: int, generator: np.random.Generator
) -> torch.Tensor:
    """``count`` windows of ``length`` consecutive tokens at random offsets."""
    if len(stream) <= length:
        raise ValueError(f"the token stream ({len(stream)} tokens) is shorter than {length + 1}")
    starts = generator.integers(0, len(stream) - length, size=count)
    return torch.from_numpy(np.stack([stream[s : s + length] for s in starts]).astype(np.int64))


def train(
    model: TinyLM,
    stream: np.ndarray,
    schedule: Schedule,
    distillation: Distillation | None = None,
    *,
    resume: dict[str, Any] | None = None,
    after_step: Callable[[int, Callable[[], dict[str, Any]]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; return the loss of every step.

    ``resume`` (a state that ``after_step`` was handed) goes on from where that run
    was; ``after_step(step, state)`` is called after every step, with a function that
    returns all that training needs to go on exactly (weights, optimizer, schedule,
    batch generator, the loss history).
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay
    )
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
    generator = np.random.default_rng(schedule.seed)
    context = model.config.context
    if distillation is not None:
        distillation.teacher.eval()
    history, start = [], 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        lr_schedule.load_state_dict(resume["lr_schedule"])
        generator.bit_generator.state = resume["generator"]
        history, start = list(resume["history"]), int(resume["step"])

    def state() -> dict[str, Any]:
        return {
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "lr_schedule": lr_schedule.state_dict(),
            "generator": generator.bit_generator.state,
            "history": list(history),
            "step": len(history),
        }

    model.train()
    for step in range(start, schedule.steps):
        window = random_windows(stream, context + 1, schedule.batch_size, generator)
        inputs, targets = window[:, :-1], window[:, 1:]
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        row = {"step": step + 1, "ce": loss.item()}
        if distillation is not None:
            with torch.no_grad():
                teacher_logits = distillation.teacher(inputs)
            soft = distillation_loss(logits, teacher_logits, distillation.temperature)
            loss = distillation.alpha * soft + (1.0 - distillation.alpha) * loss
            row["kd"] = soft.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.clip_norm)
        optimizer.step()
        lr_schedule.step()
        history.append({**row, "loss": loss.item()})
        if after_step is not None:
            after_step(step + 1, state)
            model.train()  # a validation in after_step leaves it in eval mode
    model.eval()
    return history


def grown(state: dict[str, Any], config: lm.LMConfig, layers: int) -> tuple[TinyLM, dict[str, Any]]:
    """A model of ``config`` at a run's ``state`` (as :func:`train` hands it out), grown to
    ``layers`` with its function preserved (:func:`model.grow`), and the state that
    :func:`train` goes on from: the same step, schedule and batches, the optimizer's
    moments kept for the parameters the model had and fresh for the new blocks."""
    small = TinyLM(config)
    small.load_state_dict(state["model"])
    large = lm.grow(small, layers)
    optimizer = state["optimizer"]
    if len(optimizer["param_groups"]) != 1:
        raise ValueError("growing a run needs an optimizer with one parameter group")
    index = {name: i for i, (name, _) in enumerate(large.named_parameters())}
    names = [name for name, _ in small.named_parameters()]
    moments = {index[names[int(i)]]: value for i, value in optimizer["state"].items()}
    (group,) = optimizer["param_groups"]
    optimizer = {"state": moments, "param_groups": [{**group, "params": sorted(index.values())}]}
    return large, {**state, "model": large.state_dict(), "optimizer": optimizer}


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, averaged over tokens."""
    student = F.log_softmax(student_logits.flatten(0, 1) / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.flatten(0, 1) / temperature, dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


@torch.no_grad()
def perplexity(
    model: TinyLM, stream: np.ndarray, token_bytes: np.ndarray, batch_size: int = 32
) -> dict[str, float]:
    """Loss over the whole stream, each token after the first predicted once.

    ``byte_perplexity`` is ``exp(total loss / bytes of the predicted tokens)``:
    unlike the per-token figure it does not depend on the vocabulary.
    """
    model.eval()
    context = model.config.context
    tokens = torch.from_numpy(stream.astype(np.int64))
    starts = list(range(0, len(tokens) - 1, context))
    total, count, nbytes = 0.0, 0, 0
    widths = torch.from_numpy(token_bytes)
    for i in range(0, len(starts), batch_size):
        windows = [tokens[s : s + context + 1] for s in starts[i : i + batch_size]]
        for window in _by_length(windows):
            inputs, targets = window[:, :-1], window[:, 1:]
            logits = model(inputs).flatten(0, 1)
            total += F.cross_entropy(logits, targets.flatten(), reduction="sum").item()
            count += targets.numel()
            nbytes += int(widths[targets].sum())
    return {
        "loss": total / count,
        "token_perplexity": math.exp(total / count),
        "byte_perplexity": math.exp(total / nbytes),
        "bits_per_byte": total / nbytes / math.log(2),
    }


def _by_length(windows: list[torch.Tensor]) -> list[torch.Tensor]:
    """Stack windows of equal length (only the stream's last window is shorter)."""
    full = [w for w in windows if len(w) == len(windows[0])]
    rest = [w.unsqueeze(0) for w in windows if len(w) != len(windows[0]) and len(w) > 1]
    return ([torch.stack(full)] if full else []) + rest
