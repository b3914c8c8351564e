"""memo whose objective GP has a random effect per cached stage output (to measure).

On language, trials reusing a few tokenizers taught memo's GP a short vocabulary
lengthscale (docs/benchmarks.md, "Why memo sticks to its first good tokenizer").
``SharedOutputKernel`` lets the GP explain such clusters by what the trials share.
"""

from memotune.tuner.kernels import shared_output_ends
from memotune.tuner.memo import MemoTuner
from memotune.tuner.models import GPFitter


class MemoSharedOutputs(MemoTuner):
    """memo, its objective GP's kernel with one shared effect per reused stage output."""

    def __init__(self, pipeline, **options):
        super().__init__(pipeline, **options)
        self.objective_fitter = GPFitter(shared_outputs=shared_output_ends(self.encoder.stage_end))
