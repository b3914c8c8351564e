"""Pipelines of memoized stages: search spaces, stages, pipelines, prefix keys
and the runners that execute a configuration through the stage cache."""

from .keys import canonical_json, stage_key
from .pipeline import ConfigError, ObjectiveError, Pipeline, StagePlan
from .records import (
    COMPLETED,
    FAILED,
    PRUNED,
    StageRecord,
    TrialRecord,
    best_trial,
    improves,
)
from .runner import LocalRunner, Runner, TrialFailed, run, run_trial
from .space import Choice, Float, Int, Param, SpaceError
from .stage import (
    Checkpoint,
    Output,
    Stage,
    StageContext,
    TrialPruned,
    check_settings,
    factory_version,
    scratch_folder,
    source_version,
    stage,
)

__all__ = [
    "COMPLETED",
    "FAILED",
    "PRUNED",
    "LocalRunner",
    "Checkpoint",
    "Choice",
    "ConfigError",
    "Float",
    "Int",
    "ObjectiveError",
    "Output",
    "Param",
    "Pipeline",
    "Runner",
    "SpaceError",
    "Stage",
    "StageContext",
    "StagePlan",
    "StageRecord",
    "TrialFailed",
    "TrialPruned",
    "TrialRecord",
    "best_trial",
    "canonical_json",
    "check_settings",
    "factory_version",
    "improves",
    "run",
    "run_trial",
    "scratch_folder",
    "source_version",
    "stage",
    "stage_key",
]
