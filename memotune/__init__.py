"""memotune: tune the hyperparameters of training pipelines whose stages are memoized.

from memotune import stage, Pipeline, Float, Int, Choice, run
"""

from memotune.cache import StageCache
from memotune.pipelines import (
    Checkpoint,
    Choice,
    ConfigError,
    Float,
    Int,
    Output,
    Pipeline,
    SpaceError,
    Stage,
    StageContext,
    TrialFailed,
    TrialPruned,
    TrialRecord,
    run,
    stage,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``tune`` pulls in the tuner stack (torch, BoTorch); Ray workers that only run
    # stages import memotune without it.
    if name == "tune":
        from memotune.api import tune

        return tune
    if name == "ASHA":
        from memotune.tuner.pruning import ASHA

        return ASHA
    raise AttributeError(f"module 'memotune' has no attribute {name!r}")


__all__ = [
    "ASHA",
    "Checkpoint",
    "Choice",
    "ConfigError",
    "Float",
    "Int",
    "Output",
    "Pipeline",
    "SpaceError",
    "Stage",
    "StageCache",
    "StageContext",
    "TrialFailed",
    "TrialPruned",
    "TrialRecord",
    "__version__",
    "run",
    "stage",
    "tune",
]
