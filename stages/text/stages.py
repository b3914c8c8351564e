"""Pipeline stages for a language model distilled in chained stages.

- :func:`tokenize_stage`: trains a byte-level BPE tokenizer on the training
  text and encodes both splits (knob: ``vocab_size``);
- :func:`teacher_stage`: trains the teacher LM from scratch (shape, steps,
  learning rate, weight decay, ...);
- :func:`distill_stage`: one round of knowledge distillation into a shallower
  student. The first round cuts the student from the teacher (DistilBERT's
  initialisation); each later round goes on training the previous round's
  student with its own learning rate, temperature and weight decay;
- :func:`perplexity_stage`: the student's (or, right after the teacher, the
  teacher's) validation perplexity per byte and per token, and the same on
  the test text when there is one.

Every stage runs torch on ``threads`` threads (default 1), so its cost does
not depend on what else the machine runs; batches, initial weights and so the
objective are fixed by the settings.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass, replace
from typing import Any

import torch

from memotune.pipelines import (
    Float,
    Int,
    Output,
    Param,
    SpaceError,
    Stage,
    StageContext,
    TrialPruned,
    check_settings,
    factory_version,
)
from memotune.stages.threads import limited_threads

from . import corpus, model, training
from .corpus import TextSplits, TokenizedText
from .model import LMConfig, TinyLM, cut_student
from .training import Distillation, Schedule

TEACHER_DEFAULTS: dict[str, Any] = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "context": 64,
    "steps": 100,
    "batch_size": 32,
    "lr": 3e-3,
    "weight_decay": 0.01,
    "warmup": 0.1,
    "seed": 0,
}
DISTILL_DEFAULTS: dict[str, Any] = {
    "layers": 1,
    "steps": 30,
    "batch_size": 32,
    "lr": 1e-3,
    "temperature": 2.0,
    "weight_decay": 0.01,
    "alpha": 0.5,
    "warmup": 0.1,
    "seed": 0,
}
TEACHER_SPACE: dict[str, Param] = {
    "lr": Float(1e-3, 3e-2, log=True),
    "steps": Int(40, 160),
}
DISTILL_SPACE: dict[str, Param] = {
    "lr": Float(1e-4, 1e-2, log=True),
    "temperature": Float(1.0, 8.0, log=True),
    "weight_decay": Float(1e-4, 0.3, log=True),
}
#: What :func:`perplexity_stage` reports on the test text, if there is one.
TEST_FIGURES = ("byte_perplexity", "token_perplexity", "bits_per_byte")
#: Report one history row per this fraction of a run's steps.
HISTORY_ROWS = 20


@dataclass
class TrainedLM:
    """A trained model (its config and weights) and the tokenized text it was trained on."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    data: TokenizedText
    metrics: dict[str, float]

    def build(self) -> TinyLM:
        return model.build(self.config, self.state_dict).eval()


@dataclass
class Distilled:
    """The teacher and the student after ``rounds`` rounds of distillation."""

    teacher: TrainedLM
    student: TrainedLM
    rounds: int


def tokenize_stage(
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    name: str = "tokenize",
) -> Stage:
    """A stage that trains the BPE tokenizer on a :class:`TextSplits` and encodes it."""
    space = dict(space if space is not None else {"vocab_size": Int(260, 1024, log=True)})
    fixed = _check(name, space, fixed, {"vocab_size": 512})

    def tokenize(splits: TextSplits, **params: Any) -> Output:
        if not isinstance(splits, TextSplits):
            raise TypeError(f"stage '{name}': the upstream must be TextSplits, got {splits!r}")
        data = corpus.tokenize(splits, int({**fixed, **params}["vocab_size"]))
        metrics = {
            "vocab_size": data.vocab_size,
            "train_tokens": len(data.train),
            "bytes_per_token": len(splits.train.encode()) / len(data.train),
        }
        return Output(data, metrics=metrics)

    return Stage(tokenize, space=space, name=name, version=_version_of(fixed))


def teacher_stage(
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    name: str = "teacher",
    threads: int = 1,
    fidelity: bool = False,
    checkpoint_every: int = 10,
    grow_every: int | None = None,
) -> Stage:
    """A stage that trains the teacher LM from scratch on the tokenized training text.

    ``space`` and ``fixed`` may name any of :data:`TEACHER_DEFAULTS`.

    With ``fidelity``, ``steps`` (searched) is the stage's fidelity: the learning rate
    follows the schedule of the longest run the space allows, so a shorter run is the
    start of a longer one. Every ``checkpoint_every`` steps, at the end, and where the
    study's pruner decides, it keeps a checkpoint; where the pruner decides it reports
    the validation perplexity per byte (``valid_byte_perplexity``, the one to prune on)
    and the loss per token (``valid_loss``, which does not compare teachers of
    different vocabularies) and stops if told to. A run with more steps
    goes on from the deepest cached checkpoint, with the result of training from scratch.

    With ``grow_every`` (and ``fidelity``, and ``n_layers`` searched), a deeper teacher
    grows: it trains with the fewest layers the space allows and gains one every
    ``grow_every`` steps, with its function preserved (:func:`model.grow`, LEMON's
    depth expansion), until it has ``n_layers``. So a teacher's first steps are those
    of the shallower ones, and it starts from the deepest cached checkpoint of the
    teacher one layer shallower (:attr:`Stage.warm_start`), paying only for the steps
    it trains deeper. A run too short to reach its depth ends as deep as it got.
    """
    space = dict(space if space is not None else TEACHER_SPACE)
    fixed = _check(name, space, fixed, TEACHER_DEFAULTS)
    horizon = _horizon(name, space) if fidelity else None
    growth = _growth(name, space, fidelity, grow_every, checkpoint_every)

    def train_teacher(
        data: TokenizedText, *, context: StageContext | None = None, **params: Any
    ) -> Output:
        s = {**fixed, **params}
        config = LMConfig(data.vocab_size, s["d_model"], s["n_layers"], s["n_heads"], s["context"])
        with limited_threads(threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(s["seed"])
            schedule = _schedule(s, name, horizon)
            stepped = fidelity and context is not None  # its reports go to the context
            if growth is not None:  # called bare, it trains as a study would run it
                context = context or StageContext(name, key="", trial_id=None, workdir="")
                net, history = growth.train(config, data, schedule, context)
            else:
                net = TinyLM(config)
                steps = {}
                if stepped:
                    steps = _stepping(net, data, context, checkpoint_every, int(s["steps"]))
                history = training.train(net, data.train, schedule, **steps)
            metrics = _valid_metrics(net, data)
        trained = TrainedLM(model.describe(net), net.state_dict(), data, metrics)
        metrics = {**metrics, "train_loss": history[-1]["loss"]}
        if stepped:
            return Output(trained, metrics=metrics)
        return Output(trained, metrics=metrics, history=_thin(history))

    return Stage(
        train_teacher,
        space=space,
        name=name,
        version=_version_of(
            {**fixed, "horizon": horizon, "grow_every": grow_every} if fidelity else fixed
        ),
        fidelity="steps" if fidelity else None,
        warm_start=growth.base if growth is not None else None,
    )


def _horizon(name: str, space: dict[str, Param]) -> int:
    steps = space.get("steps")
    if not isinstance(steps, Int):
        raise SpaceError(f"stage '{name}': a steps fidelity needs 'steps' searched as an Int")
    return int(steps.high)


def _stepping(
    net: TinyLM, data: TokenizedText, context: StageContext, every: int, last: int
) -> dict[str, Any]:
    """``training.train``'s ``resume`` and ``after_step`` for a teacher with a fidelity."""
    resume = context.resume.state if context.resume is not None else None
    return {"resume": resume, "after_step": _after_step(net, data, context, every, last)}


def _after_step(
    net: TinyLM,
    data: TokenizedText,
    context: StageContext,
    every: int,
    last: int,
    *,
    shared: int = 0,
    kept: dict[int, Any] | None = None,
) -> Any:
    """What a teacher with a fidelity does after each step: at the pruner's rungs, report
    the validation perplexity per byte and stop if told to; every ``every`` steps, at the
    rungs, at step ``shared`` and at the end, keep a checkpoint (up to step ``shared``, as
    the state of the teacher it grows from); and hand the state at the steps ``kept``
    names to it."""

    def after_step(step: int, state) -> None:
        judged = context.judged_at(step)
        if judged:
            valid = _valid_metrics(net, data)
            context.report(
                step, valid_byte_perplexity=valid["byte_perplexity"], valid_loss=valid["valid_loss"]
            )
        if judged or step % every == 0 or step in (last, shared):
            keep = context.checkpoint_base if step <= shared else context.checkpoint
            keep(step, state())
        if kept is not None and step in kept:
            kept[step] = state()
        if judged and step < last and context.should_prune():  # trained: nothing to save
            raise TrialPruned()

    return after_step


@dataclass(frozen=True)
class _Growth:
    """A teacher that trains with ``fewest`` layers and gains one every ``every`` steps
    until it has its ``n_layers`` (:func:`teacher_stage`'s ``grow_every``)."""

    fewest: int
    every: int
    checkpoint_every: int

    def depth(self, layers: int, step: int) -> int:
        """The layers of a ``layers``-deep teacher after ``step`` steps (those that train
        step ``step``; before the first, the fewest)."""
        return min(layers, self.fewest + max(0, step - 1) // self.every)

    def shared(self, layers: int) -> int:
        """How many steps a ``layers``-deep teacher shares with one a layer shallower."""
        return max(0, layers - self.fewest) * self.every

    def base(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The settings of the teacher a run starts from: one layer shallower, trained for
        the steps they share (:attr:`Stage.warm_start`); ``None`` at the fewest layers."""
        layers, steps = int(params["n_layers"]), int(params["steps"])
        if layers <= self.fewest:
            return None
        return {**params, "n_layers": layers - 1, "steps": min(steps, self.shared(layers))}

    def train(
        self, config: LMConfig, data: TokenizedText, schedule: Schedule, context: StageContext
    ) -> tuple[TinyLM, list[dict[str, float]]]:
        """Train from the run's own checkpoint, else the shallower teacher's, else from
        scratch (torch seeded by the caller), growing at every ``every`` steps."""
        layers, last = config.n_layers, schedule.steps
        start = context.resume or context.base
        state, step = (start.state, start.step) if start is not None else (None, 0)
        net = TinyLM(replace(config, n_layers=self.depth(layers, step)))
        while True:
            depth = self.depth(layers, step + 1) if step < last else net.config.n_layers
            if depth > net.config.n_layers:
                net, state = training.grown(state, net.config, depth)
            end = last if depth >= layers else min(last, self.shared(depth + 1))
            kept: dict[int, Any] = {end: None}
            hook = _after_step(
                net,
                data,
                context,
                self.checkpoint_every,
                last,
                shared=self.shared(layers),
                kept=kept,
            )
            history = training.train(
                net, data.train, replace(schedule, steps=end), resume=state, after_step=hook
            )
            if end >= last:
                return net, history
            step, state = end, kept[end]


def _growth(
    name: str, space: dict[str, Param], fidelity: bool, every: int | None, checkpoint_every: int
) -> _Growth | None:
    if every is None:
        return None
    layers = space.get("n_layers")
    if not fidelity or not isinstance(layers, Int) or every < 1:
        raise SpaceError(
            f"stage '{name}': grow_every needs a steps fidelity, n_layers searched as an Int "
            f"and a positive number of steps, got fidelity={fidelity}, n_layers={layers!r}, "
            f"grow_every={every}"
        )
    return _Growth(int(layers.low), int(every), checkpoint_every)


def distill_stage(
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    name: str = "distill",
    threads: int = 1,
) -> Stage:
    """A round of distillation: upstream a :class:`TrainedLM` (the teacher: the student
    is cut from it with ``layers`` blocks) or a :class:`Distilled` (its student goes on).

    ``space`` and ``fixed`` may name any of :data:`DISTILL_DEFAULTS`.
    """
    space = dict(space if space is not None else DISTILL_SPACE)
    fixed = _check(name, space, fixed, DISTILL_DEFAULTS)

    def distill(upstream: TrainedLM | Distilled, **params: Any) -> Output:
        s = {**fixed, **params}
        if isinstance(upstream, Distilled):
            teacher, start, rounds = upstream.teacher, upstream.student, upstream.rounds
        elif isinstance(upstream, TrainedLM):
            teacher, start, rounds = upstream, None, 0
        else:
            raise TypeError(
                f"stage '{name}': the upstream must be a TrainedLM or Distilled, got {upstream!r}"
            )
        with limited_threads(threads):
            teacher_net = teacher.build()
            student = start.build() if start else cut_student(teacher_net, s["layers"])
            rule = Distillation(teacher_net, s["temperature"], s["alpha"])
            history = training.train(student, teacher.data.train, _schedule(s, name), rule)
        metrics = {"train_loss": history[-1]["loss"], "kd": history[-1]["kd"]}
        trained = TrainedLM(model.describe(student), student.state_dict(), teacher.data, metrics)
        distilled = Distilled(teacher, trained, rounds + 1)
        return Output(distilled, metrics=metrics, history=_thin(history))

    return Stage(distill, space=space, name=name, version=_version_of(fixed))


def perplexity_stage(*, name: str = "evaluate", threads: int = 1) -> Stage:
    """The last stage: validation perplexity of the student (or of a lone teacher).

    Reports ``byte_perplexity`` (comparable across vocabularies; the natural
    objective), ``token_perplexity``, ``bits_per_byte`` and the teacher's
    ``teacher_byte_perplexity``; when the text has a test split, the same
    three figures on it as ``test_byte_perplexity``, ``test_token_perplexity``
    and ``test_bits_per_byte`` (nothing is trained on the test text).
    """

    def evaluate(upstream: TrainedLM | Distilled) -> dict[str, float]:
        final = upstream.student if isinstance(upstream, Distilled) else upstream
        teacher = upstream.teacher if isinstance(upstream, Distilled) else upstream
        data, net = final.data, final.build()
        with limited_threads(threads):
            metrics = training.perplexity(net, data.valid, data.token_bytes())
            if len(data.test) > 1:
                test = training.perplexity(net, data.test, data.token_bytes())
                metrics.update({f"test_{k}": test[k] for k in TEST_FIGURES})
        return {
            **metrics,
            "teacher_byte_perplexity": teacher.metrics["byte_perplexity"],
            "parameters": float(sum(t.numel() for t in final.state_dict.values())),
        }

    return Stage(evaluate, space={}, name=name, version=_version_of({}))


def _valid_metrics(net: TinyLM, data: TokenizedText) -> dict[str, float]:
    result = training.perplexity(net, data.valid, data.token_bytes())
    return {"byte_perplexity": result["byte_perplexity"], "valid_loss": result["loss"]}


def _schedule(settings: dict[str, Any], stage: str, horizon: int | None = None) -> Schedule:
    """The run's schedule; each stage draws its own batches (its name salts the seed)."""
    return Schedule(
        horizon=horizon,
        steps=int(settings["steps"]),
        batch_size=int(settings["batch_size"]),
        lr=float(settings["lr"]),
        weight_decay=float(settings["weight_decay"]),
        warmup=float(settings["warmup"]),
        seed=int(settings["seed"]) * 1_000_003 + zlib.crc32(stage.encode()),
    )


def _thin(history: list[dict[str, float]]) -> list[dict[str, float]]:
    every = max(1, len(history) // HISTORY_ROWS)
    return [row for row in history if row["step"] % every == 0 or row is history[-1]]


def _check(
    name: str, space: dict[str, Param], fixed: dict[str, Any] | None, defaults: dict[str, Any]
) -> dict[str, Any]:
    """The fixed settings with defaults filled in; unknown or doubly given names fail."""
    fixed = check_settings(name, space, fixed, known=defaults)
    return {k: v for k, v in {**defaults, **fixed}.items() if k not in space}


def _version_of(fixed: dict[str, Any]) -> str:
    """Changes when this package's code or the stage's fixed settings change."""
    return factory_version([corpus, model, training, sys.modules[__name__]], fixed)
