"""memotune: tune the hyperparameters of training pipelines whose stages are memoized.

from memotune import stage, Pipeline, Float, Int, Choice, run
"""

from memotune.api import tune
from memotune.cache import StageCache
from memotune.pipelines import (
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
    TrialRecord,
    run,
    stage,
)

__version__ = "0.1.0"

__all__ = [
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
    "TrialRecord",
    "__version__",
    "run",
    "stage",
    "tune",
]
