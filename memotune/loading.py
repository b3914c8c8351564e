"""Finding the pipeline a command line names: ``FILE.py``, ``FILE.py:NAME`` or a
built-in benchmark pipeline (``synthetic-3``, ``synthetic-10``)."""

from __future__ import annotations

from pathlib import Path

from memotune.pipelines import Pipeline
from memotune.pipelines.shipping import import_file
from memotune.stages.synthetic import LAYOUTS, synthetic_pipeline

__all__ = ["PipelineNotFound", "import_file", "load_pipeline"]


class PipelineNotFound(ValueError):
    """The file or name does not hold a pipeline."""


#: The pipeline a file with several is run by, unless ``FILE.py:NAME`` picks another.
DEFAULT_NAME = "pipeline"


def load_pipeline(spec: str) -> Pipeline:
    """The pipeline ``spec`` names: a built-in one, or ``FILE.py[:NAME]`` (without NAME,
    the file's only pipeline, or of several the one named ``pipeline``)."""
    if spec in LAYOUTS:
        return synthetic_pipeline(spec)
    path_text, _, name = spec.partition(":")
    path = Path(path_text)
    if path.suffix != ".py":
        known = ", ".join(sorted(LAYOUTS))
        raise PipelineNotFound(
            f"'{spec}' is neither a Python file (FILE.py[:NAME]) nor a built-in pipeline ({known})"
        )
    if not path.is_file():
        raise PipelineNotFound(f"no such file: {path}")
    module = import_file(path)
    if name:
        found = getattr(module, name, None)
        if not isinstance(found, Pipeline):
            raise PipelineNotFound(f"{path} has no Pipeline named '{name}'")
        return found
    pipelines = {n: v for n, v in vars(module).items() if isinstance(v, Pipeline)}
    if not pipelines:
        raise PipelineNotFound(f"{path} defines no Pipeline object")
    if len(pipelines) > 1 and isinstance(pipelines.get(DEFAULT_NAME), Pipeline):
        return pipelines[DEFAULT_NAME]  # the file's own; others by FILE.py:NAME
    if len(pipelines) > 1:
        raise PipelineNotFound(
            f"{path} defines several pipelines ({', '.join(sorted(pipelines))}); "
            f"pick one with {path}:NAME"
        )
    return next(iter(pipelines.values()))
