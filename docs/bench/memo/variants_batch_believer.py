"""memo with batches chosen by a kriging believer instead of one per first stage.

``memo`` fills a batch (one optimization, several trials) with the acquisition's
best candidates, at most one building on each first stage's cached output. On
the ensemble its optimizations' first choices were last-stage tweaks of the
best cached prefix (30 of 34 on one run, as EEIPU's), and every trial that
ran a new first stage (17 of them) was a batch's fill-in: an unpolished
screening point, pushed off the best prefixes by that rule.

Here each next member of a batch is the candidate with the best acquisition
under the model conditioned on the members chosen so far, at their posterior
mean ("kriging believer", as pending trials already are): a candidate close
to a chosen one loses its expected improvement, one far from it keeps it,
whatever prefix it builds on. The pool is the one optimization's candidates
(polished and screened), its best ``POOL`` re-scored without re-optimizing.
"""

import torch

from memotune.tuner.cached_posterior import CachedPosteriorGP
from memotune.tuner.memo import BATCH_MIN_DISTANCE, MemoTuner

#: The candidates re-scored for each next member (the optimization's best first).
POOL = 128


class MemoBelieverBatch(MemoTuner):
    def _choose(self, candidates, pending, model, budget):
        if self._batch == 1 or not candidates:
            return super()._choose(candidates, pending, model, budget)
        candidates = candidates[:POOL]
        rows = torch.stack([c.row for c in candidates])
        depth = torch.tensor([c.prefix.depth for c in candidates], dtype=torch.long)
        cached = torch.tensor([c.prefix.cached_cost for c in candidates], dtype=torch.float64)
        threshold = 1 - model.relative_noise() / 2
        novel = (model.correlation(rows).amax(-1) <= threshold).tolist()
        values = torch.tensor([c.value for c in candidates], dtype=torch.float64)
        current, gp = model, model.model
        X = gp.train_inputs[0]
        Y = gp.outcome_transform.untransform(gp.train_targets.unsqueeze(-1))[0]
        taken = {self._key(c) for c in pending}
        chosen, picked = [], []
        excluded = [not n for n in novel]
        while len(chosen) < self._batch:
            pick = None
            for i in torch.argsort(values, descending=True).tolist():
                if excluded[i]:
                    continue
                excluded[i] = True
                row = rows[i]
                if picked and float((torch.stack(picked) - row).norm(dim=-1).min()) < (
                    BATCH_MIN_DISTANCE
                ):
                    continue
                config = self._config_of(candidates[i])
                if not self._is_new(config, taken):
                    continue
                pick = i
                break
            if pick is None:
                break
            taken.add(self._key(config))
            chosen.append((candidates[pick], config))
            picked.append(rows[pick])
            if len(chosen) == self._batch:
                break
            with torch.no_grad():
                believed = current.mean_and_variance(rows[pick].unsqueeze(0))[0]
            X = torch.cat([X, rows[pick].unsqueeze(0)])
            Y = torch.cat([Y, believed.reshape(1, 1)])
            current = CachedPosteriorGP(self.objective_fitter.build(X, Y))
            make_acquisition, _ = self._acquisition(current, X, Y, budget)
            with torch.no_grad():
                values = make_acquisition(depth, cached)(rows.unsqueeze(1))
        return chosen
