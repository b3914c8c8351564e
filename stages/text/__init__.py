"""Language models on text that ships with Python: a BPE tokenizer, a small transformer
teacher, chained distillation into a shallower student, perplexity per byte."""

from .corpus import TextSplits, TokenizedText, pydoc_text, tokenize
from .model import LMConfig, TinyLM, cut_student
from .stages import (
    DISTILL_SPACE,
    TEACHER_SPACE,
    Distilled,
    TrainedLM,
    distill_stage,
    perplexity_stage,
    teacher_stage,
    tokenize_stage,
)
from .training import Distillation, Schedule, distillation_loss, perplexity, train

__all__ = [
    "DISTILL_SPACE",
    "TEACHER_SPACE",
    "Distillation",
    "Distilled",
    "LMConfig",
    "Schedule",
    "TextSplits",
    "TinyLM",
    "TokenizedText",
    "TrainedLM",
    "cut_student",
    "distill_stage",
    "distillation_loss",
    "perplexity",
    "perplexity_stage",
    "pydoc_text",
    "teacher_stage",
    "tokenize",
    "tokenize_stage",
    "train",
]
