"""``memotune.tune``: a tuning study from Python."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from memotune.cache import DEFAULT_ROOT, StageCache, open_cache
from memotune.pipelines import Pipeline
from memotune.progress import ProgressPrinter
from memotune.runners import CONNECT_TIMEOUT_SECONDS, open_runner
from memotune.signals import terminate_as_interrupt
from memotune.tracking import MlflowTracker
from memotune.tuner.budget import Budget
from memotune.tuner.callbacks import StudyCallback
from memotune.tuner.pruning import Pruner
from memotune.tuner.registry import DEFAULT_TUNER, TunerSpec
from memotune.tuner.study import DEFAULT_STORAGE, Study, StudyResult


def tune(
    pipeline: Pipeline,
    *,
    tuner: TunerSpec = DEFAULT_TUNER,
    budget: float | None = None,
    trials: int | None = None,
    seed: int = 0,
    study: str | None = None,
    workers: int = 1,
    cache: StageCache | str | os.PathLike | None = DEFAULT_ROOT,
    storage: str | os.PathLike = DEFAULT_STORAGE,
    runner: str = "ray",
    address: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    retries: int = 3,
    progress: bool = True,
    tracking: bool = True,
    tracking_uri: str | None = None,
    callbacks: Sequence[StudyCallback] = (),
    max_consecutive_failures: int = 5,
    tuner_options: dict[str, Any] | None = None,
    pruner: Pruner | None = None,
) -> StudyResult:
    """Tune ``pipeline`` until ``budget`` (cost units: seconds of stage compute, cache
    loads and the tuner's own time) or ``trials`` (a count) is spent.

    ``tuner`` is a registered name (``"memo"``, the default; ``"eeipu"``, ``"ei"``,
    ``"tpe"``, … see ``memotune.tuner.TUNERS``), a :class:`memotune.tuner.Tuner`
    subclass of your own, or an import path to one (``"package.module:Class"``,
    ``"path/to/file.py:Class"``).

    ``study`` names the study; an existing one is resumed (its budget or trial
    count becomes the new total). Without a name, a new study is started.

    ``runner="ray"`` (the default) runs every stage as a Ray task, ``workers``
    trials at a time; ``address`` (``"auto"``, ``"ray://…"``) joins a running
    cluster (failing in one line if nothing answers there within
    ``connect_timeout`` seconds), otherwise an embedded Ray starts and stops
    with the sweep. A stage
    whose worker or node dies is retried ``retries`` times elsewhere.
    ``runner="local"`` runs trials one by one in this process (for debugging).

    With ``tracking`` (the default) the study is logged to MLflow at
    ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
    in the working directory): an experiment named after the study, a parent run
    for the sweep and a child run per trial. See ``memotune.tracking``.

    ``pruner`` (e.g. ``memotune.ASHA("valid_loss")``) stops trials whose stage with
    a fidelity falls behind as it trains (see ``memotune.tuner.pruning``).
    """
    spend = Budget.for_pipeline(pipeline, budget=budget, trials=trials)
    name = study or f"{pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    hooks = [ProgressPrinter()] if progress else []
    if tracking:
        hooks.append(MlflowTracker(tracking_uri, announce=progress))
    stage_cache = open_cache(cache)
    opened = Study(  # every error its arguments or journal reveal comes before Ray starts
        pipeline,
        name=name,
        budget=spend,
        tuner=tuner,
        seed=seed,
        storage=storage,
        cache=stage_cache,
        workers=workers,
        callbacks=[*hooks, *callbacks],
        max_consecutive_failures=max_consecutive_failures,
        tuner_options=tuner_options,
        pruner=pruner,
    )
    try:
        with open_runner(
            runner,
            pipeline,
            stage_cache,
            address=address,
            retries=retries,
            connect_timeout=connect_timeout,
        ) as ran:
            with terminate_as_interrupt():
                return opened.run(ran)
    finally:
        opened.close()
