"""The comparison harness behind ``memotune bench``: every tuner on the same pipeline,
seeds and budget (Ray Tune's ASHA too, as the peer ``RAY_TUNE``), judged by the test
score of the incumbent a user would pick.

``compare`` runs the studies (each in its own process, folder and cache),
``summarize`` makes the table (test score, the paper's gain since warm-up,
paired wins/ties/losses and Wilcoxon p-values against a reference tuner, the
tuner's share of the budget), ``format_table`` prints it, ``plot_summary``
draws the anytime curves, ``provenance`` records the commit, machine and
command line, and ``merge_tables`` joins tables of tuners run at different
times. See ``memotune.bench._stats`` for the definitions.
"""

from ._merge import merge_tables
from ._plot import anytime_curves, plot_summary
from ._provenance import provenance
from ._raytune import RAY_TUNE
from ._runs import (
    WARMUP_TRIALS,
    RunFailure,
    RunResult,
    compare,
    run_one,
    score_on_test,
    warmup_length,
)
from ._stats import paired, relative_gain, summarize, wilcoxon_p
from ._table import format_table

__all__ = [
    "RAY_TUNE",
    "WARMUP_TRIALS",
    "RunFailure",
    "RunResult",
    "anytime_curves",
    "compare",
    "format_table",
    "merge_tables",
    "paired",
    "plot_summary",
    "provenance",
    "relative_gain",
    "run_one",
    "score_on_test",
    "summarize",
    "warmup_length",
    "wilcoxon_p",
]
