"""What a tuner's objective GP believes about the first stage's first parameter.

One study of one tuner on one pipeline and seed, in this process (one core),
as ``trial_depths.py`` runs it. Then, on the first N trials for each N of
``--at``, the objective's GP (BoTorch's ``SingleTaskGP`` as the GP tuners fit
it, on the values as observed and through ``memo``'s Yeo-Johnson warping) is
fitted and reports that parameter's lengthscale (in the unit cube) and its
posterior mean at the best trial so far with the parameter moved to either
bound; the same for ``memo``'s GP (warped, with a random effect per cached stage
output). It shows whether data the tuner gathered by reusing a few first stages
taught the GP that moving away from them does harm (on language, ``memo``
stuck to the first good tokenizer while EI's trials all went to the largest
vocabulary).

    python benchmarks/first_stage_lengthscale.py examples/language.py --seed 14 --tuner ei
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report, run_study, study_parser  # noqa: E402

from memotune.tuner.encoding import SpaceEncoder  # noqa: E402
from memotune.tuner.kernels import shared_output_ends  # noqa: E402
from memotune.tuner.memo import MemoTuner  # noqa: E402
from memotune.tuner.models import GPFitter  # noqa: E402


def main() -> None:
    p = study_parser(__doc__.splitlines()[0])
    p.add_argument("--at", default="10,20,40", help="fit on the first N trials, for each N")
    args = p.parse_args()
    pipeline, _, trials = run_study(args)
    trials = [t for t in trials if t.objective is not None]
    encoder = SpaceEncoder(pipeline)
    sign = 1.0 if pipeline.maximize else -1.0
    X = torch.stack([encoder.encode(pipeline.validate(t.config)) for t in trials])
    Y = sign * torch.tensor([[t.objective] for t in trials], dtype=torch.float64)
    column = encoder.columns[0]
    figures: dict = {"trials": len(trials), "parameter": f"{column.stage_name}.{column.name}"}
    warped = MemoTuner(pipeline, seed=args.seed)._warp
    shared = shared_output_ends(encoder.stage_end)
    for n in (int(a) for a in args.at.split(",") if int(a) <= len(trials)):
        fits = (
            ("observed", Y[:n], GPFitter()),
            ("warped", warped(Y[:n]), GPFitter()),
            ("warped, shared outputs", warped(Y[:n]), GPFitter(shared_outputs=shared)),
        )
        for name, values, fitter in fits:
            model = fitter.fit(X[:n], values)
            best = int(values.argmax())
            probes = X[best].repeat(3, 1)
            probes[1, 0], probes[2, 0] = 0.0, 1.0
            with torch.no_grad():
                mean = model.posterior(probes).mean.squeeze(-1)
            kernel = getattr(model.covar_module, "base", model.covar_module)
            lengthscale = float(kernel.lengthscale.detach().squeeze()[0])
            figures[f"n={n} {name}: lengthscale"] = lengthscale
            figures[f"n={n} {name}: mean at the best"] = sign * float(mean[0])
            figures[f"n={n} {name}: mean at the low bound"] = sign * float(mean[1])
            figures[f"n={n} {name}: mean at the high bound"] = sign * float(mean[2])
    report(figures, args.json)


if __name__ == "__main__":
    main()
