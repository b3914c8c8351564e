"""Stages: Python functions with a search space, a version and resource needs."""

from __future__ import annotations

import hashlib
import inspect
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .keys import canonical_json
from .space import Int, Param, SpaceError, check_space


@dataclass
class Output:
    """What a stage may return instead of a bare value.

    ``cost`` replaces the measured seconds as the stage's compute cost (GPU-seconds,
    money, a synthetic benchmark's cost units): that figure is what the cost
    models learn and the budget is charged. ``metrics`` are scalar metrics of
    the stage; ``history`` holds stepped metrics (one dict per step, e.g. per
    epoch). All of it is cached with the value.
    """

    value: Any
    cost: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


class TrialPruned(Exception):
    """Raised by a stage function that stops early because ``context.should_prune()``
    said so: the trial ends as ``pruned``, not ``failed``, and what it checkpointed
    stays cached."""


class Judge(Protocol):
    """What a stage's context asks the study's pruner."""

    def should_prune(
        self, trial_id: int | None, stage: str, step: int, metrics: dict[str, float]
    ) -> bool:
        """Whether the trial stops at ``step``, having reported ``metrics`` there."""
        ...

    def decides_at(self, stage: str, step: int) -> bool:
        """Whether ``should_prune`` may stop a trial of ``stage`` at ``step`` at all."""
        ...


@dataclass(frozen=True)
class Checkpoint:
    """A stage's state after ``step`` steps of its fidelity (:meth:`StageContext.checkpoint`)."""

    step: int
    state: Any


@dataclass
class StageContext:
    """Handed to a stage function that declares a ``context`` keyword argument.

    For a stage with a fidelity, ``resume`` is the cached checkpoint to go on
    from (the deepest one at or below this run's fidelity, of a run with the
    same other settings and the same upstream output), or ``None``: start from
    scratch. For a stage with a warm start whose run is not to be continued,
    ``base`` is the deepest cached checkpoint of the run it starts from (at or
    below the step its rule names), or ``None``: train that run first.
    """

    stage: str
    key: str
    trial_id: int | None
    workdir: str
    history: list[dict[str, float]] = field(default_factory=list)
    resume: Checkpoint | None = None
    keep: Callable[[int, Any], None] | None = field(default=None, repr=False)
    judge: Judge | None = field(default=None, repr=False)
    base: Checkpoint | None = None
    keep_base: Callable[[int, Any], None] | None = field(default=None, repr=False)

    def report(self, step: int, **metrics: float) -> None:
        """Record stepped metrics (e.g. per epoch); they reach the trial's tracking run."""
        self.history.append({"step": step, **{k: float(v) for k, v in metrics.items()}})

    def should_prune(self) -> bool:
        """Whether the study's pruner stops this trial at the step reported last (then
        checkpoint first, and ``raise TrialPruned()``); always ``False`` without a
        pruner or a report."""
        if self.judge is None or not self.history:
            return False
        *_, last = self.history
        step = int(last["step"])
        return bool(self.judge.should_prune(self.trial_id, self.stage, step, last))

    def judged_at(self, step: int) -> bool:
        """Whether the study's pruner decides at ``step`` (an ASHA rung): a metric that
        only the pruner needs, and that costs to compute, is worth it there alone.
        ``False`` without a pruner."""
        return self.judge is not None and bool(self.judge.decides_at(self.stage, step))

    def checkpoint(self, step: int, state: Any) -> None:
        """Keep ``state`` as the stage's state after ``step`` steps of its fidelity, so a
        later run with the same settings and a larger fidelity goes on from it instead
        of starting over. ``state`` must hold all that training needs to go on exactly
        as it would have (weights, optimizer state, random generators); the stepped
        metrics reported so far are kept with it. Without a cache it is not kept."""
        if self.keep is not None:
            self.keep(int(step), state)

    def checkpoint_base(self, step: int, state: Any) -> None:
        """Keep ``state`` as the state after ``step`` steps of the run this one starts
        from (:attr:`Stage.warm_start`), as that run would keep it, so that other runs
        starting from it, and the run itself, find it. Without a cache it is not kept."""
        if self.keep_base is not None:
            self.keep_base(int(step), state)


@dataclass(eq=False)
class Stage:
    """One step of a pipeline: ``fn(upstream, **params) -> output``.

    The version defaults to a hash of the function's source, so editing the
    function invalidates its cache entries and everything downstream of them.
    """

    fn: Callable[..., Any]
    space: dict[str, Param] = field(default_factory=dict)
    name: str | None = None
    version: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    cache: bool = True
    fidelity: str | None = None
    #: Given the stage's settings, those of another run of it (its fidelity at the step
    #: to start from) whose state this run starts from, or ``None``: from scratch. The
    #: function gets that run's cached checkpoint as ``context.base`` and must give the
    #: same result whether it came from the cache or was trained there and then (e.g.
    #: growing a smaller model trained for some steps: :func:`memotune.stages.text.teacher_stage`).
    warm_start: Callable[[dict[str, Any]], dict[str, Any] | None] | None = field(
        default=None, repr=False
    )

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"a stage needs a callable, got {self.fn!r}")
        self.name = self.name or getattr(self.fn, "__name__", None)
        if not self.name or not isinstance(self.name, str):
            raise SpaceError(f"stage {self.fn!r}: give it a name=")
        self.space = check_space(self.space, self.name)
        self.version = str(self.version) if self.version is not None else source_version(self.fn)
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise SpaceError(f"stage '{self.name}': num_cpus and num_gpus must be >= 0")
        self.takes_context = _check_signature(self.fn, self.space, self.name)
        if self.fidelity is not None:
            _check_fidelity(self)
        elif self.warm_start is not None:
            raise SpaceError(
                f"stage '{self.name}': a warm start starts from another run's checkpoint, "
                "which only a stage with a fidelity keeps"
            )

    def __call__(self, upstream: Any, **params: Any) -> Any:
        return self.fn(upstream, **params)

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, version={self.version!r}, space={list(self.space)})"

    @property
    def ray_options(self) -> dict[str, Any]:
        """Resource requests for this stage's Ray task."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory:
            options["memory"] = self.memory
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


def stage(
    fn: Callable[..., Any] | None = None,
    *,
    space: dict[str, Param] | None = None,
    name: str | None = None,
    version: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    memory: int | None = None,
    resources: dict[str, float] | None = None,
    cache: bool = True,
    fidelity: str | None = None,
    warm_start: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
):
    """Decorator that turns a function into a :class:`Stage`.

    ``@stage`` and ``@stage(space={...}, version="1", num_cpus=1)`` both work.
    ``fidelity`` names an integer parameter of the space that counts training
    steps (epochs); the function then takes a ``context``, continues from
    ``context.resume`` when it is given and keeps its state with
    ``context.checkpoint(step, state)``. ``warm_start`` (:attr:`Stage.warm_start`)
    names the run a run starts from.
    """

    def wrap(f: Callable[..., Any]) -> Stage:
        return Stage(
            f,
            space=dict(space or {}),
            name=name,
            version=version,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            memory=memory,
            resources=dict(resources or {}),
            cache=cache,
            fidelity=fidelity,
            warm_start=warm_start,
        )

    return wrap(fn) if fn is not None else wrap


def source_version(*objects: Any) -> str:
    """A short hash of the source code of ``objects`` (functions, classes, callables).

    Stage factories pass the user's own callables too (a model factory, a loss),
    so editing any of them invalidates the stage.
    """
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(_source_of(obj).encode())
    return digest.hexdigest()[:16]


def check_settings(
    stage: str,
    space: Mapping[str, Param],
    fixed: Mapping[str, Any] | None,
    known: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A stage factory's fixed settings, copied: a name both searched and fixed, or
    (given ``known``) a name the stage does not know, is a :class:`SpaceError`."""
    fixed = dict(fixed or {})
    if known is not None:
        known = sorted(known)
        unknown = sorted((set(space) | set(fixed)) - set(known))
        if unknown:
            raise SpaceError(
                f"stage '{stage}': unknown settings {unknown}; known: {', '.join(known)}"
            )
    both = sorted(set(space) & set(fixed))
    if both:
        raise SpaceError(f"stage '{stage}': {both} are both searched and fixed")
    return fixed


def factory_version(code: Sequence[Any], fixed: Mapping[str, Any]) -> str:
    """The version of a stage a factory builds: changes with the source of ``code``
    (the factory's modules, the user's callables) and with the fixed settings."""
    try:
        settings = canonical_json(dict(fixed))
    except (TypeError, ValueError) as error:
        raise SpaceError(f"fixed values must be plain numbers, strings or lists: {error}") from None
    return hashlib.sha256(f"{source_version(*code)}:{settings}".encode()).hexdigest()[:16]


@contextmanager
def scratch_folder(context: StageContext | None, prefix: str = "memotune-") -> Iterator[str]:
    """The stage key's scratch folder under a runner, or a temporary one when the
    stage is called directly."""
    if context is not None:
        yield context.workdir
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield folder


def _source_of(obj: Any) -> str:
    target = getattr(obj, "func", obj)  # functools.partial
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is None:
            target = type(target)
            try:
                return textwrap.dedent(inspect.getsource(target))
            except (OSError, TypeError):
                return repr(target)
        source = repr((code.co_code, code.co_consts, code.co_names))
    if getattr(target, "__name__", None) == "<lambda>":  # its source is the whole line
        code = target.__code__
        source += repr((code.co_code, code.co_consts, code.co_names))
    if target is not obj:  # a partial's bound arguments are part of what it does
        source += repr((getattr(obj, "args", ()), sorted(getattr(obj, "keywords", {}).items())))
    return source


def _check_fidelity(stage: Stage) -> None:
    """A fidelity is an integer parameter of the space, and the function takes a context
    (to be handed its checkpoint and to keep new ones)."""
    param = stage.space.get(stage.fidelity)
    if not isinstance(param, Int):
        raise SpaceError(
            f"stage '{stage.name}': the fidelity '{stage.fidelity}' must be an Int "
            "parameter of its space"
        )
    if not stage.takes_context:
        raise SpaceError(
            f"stage '{stage.name}' has a fidelity: its function must take a 'context' "
            "argument, to continue from context.resume and keep context.checkpoint(...)"
        )
    if not stage.cache:
        raise SpaceError(f"stage '{stage.name}': a fidelity needs the stage's output cached")


def _check_signature(fn: Callable[..., Any], space: dict[str, Param], name: str) -> bool:
    """Check ``fn`` can be called as ``fn(upstream, **params)``; say if it wants a context."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    parameters = signature.parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    positional = [
        p
        for p in parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if not positional and not any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters.values()
    ):
        raise SpaceError(
            f"stage '{name}': the function must take the upstream output as its first argument"
        )
    accepted = {p.name for p in positional[1:]} | {
        p.name for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    if not takes_var_kw:
        for param in space:
            if param not in accepted:
                raise SpaceError(
                    f"stage '{name}', parameter '{param}': "
                    "the function has no argument of that name"
                )
    for param in positional[1:] + [
        p for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]:
        if param.default is inspect.Parameter.empty and param.name not in space:
            if param.name != "context":
                raise SpaceError(
                    f"stage '{name}': argument '{param.name}' has no default and is not "
                    "in the search space"
                )
    return "context" in accepted
