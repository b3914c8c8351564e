"""MLflow tracking for studies: a study is an experiment, a sweep a parent run, each
trial a nested child run."""

from .store import DEFAULT_URI, resolve_uri
from .tracker import MlflowTracker

__all__ = ["DEFAULT_URI", "MlflowTracker", "resolve_uri"]
