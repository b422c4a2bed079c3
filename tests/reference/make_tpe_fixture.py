#!/usr/bin/env python3
"""Fixture for runner/tpe.c: Optuna's Parzen estimator and its good/bad split.

How it was made: `python3 tests/reference/make_tpe_fixture.py > tests/reference/tpe_fixture.json`
with optuna 5.0.0 and numpy 2.4.6 from PyPI (`pip install optuna==5.0.0`). Inputs come from
numpy's default_rng(20261205).

Each "parzen" case builds Optuna's _ParzenEstimator with TPESampler's default settings
(prior weight 1, magic clip, no endpoints, default_weights) over ftlab's search space
coordinates: a real dimension is FloatDistribution(0, 1), an integer one
IntDistribution(0, levels - 1), a categorical one CategoricalDistribution(range(levels)),
and records log_pdf at query points. Numeric observations of a case are distinct (the
order numpy gives tied values is not specified). Each "split" case adds complete, pruned
and running trials to a study and records which ones optuna.samplers._tpe.sampler.
_split_trials puts in the good ("below") group.
"""
import json
import math
import sys

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_weights
from optuna.trial import TrialState, create_trial

assert optuna.__version__ == "5.0.0", optuna.__version__


def space_of(dims):
    sp = {}
    for j, (kind, levels) in enumerate(dims):
        name = "p%d" % j
        if kind == "real":
            sp[name] = FloatDistribution(0.0, 1.0)
        elif kind == "int":
            sp[name] = IntDistribution(0, levels - 1)
        else:
            sp[name] = CategoricalDistribution(list(range(levels)))
    return sp


def column(rng, kind, levels, n):
    if kind == "real":
        return rng.uniform(size=n)
    if kind == "int":
        return rng.choice(levels, size=n, replace=False).astype(float)
    return rng.integers(0, levels, size=n).astype(float)


def parzen_case(rng, dims, n, m):
    sp = space_of(dims)
    cols = [column(rng, k, lv, n) for k, lv in dims]
    qcols = [column(rng, k, lv, m) if k != "int" else rng.integers(0, lv, size=m).astype(float)
             for k, lv in dims]
    params = _ParzenEstimatorParameters(prior_weight=1.0, consider_magic_clip=True,
                                        consider_endpoints=False, weights=default_weights,
                                        multivariate=True)
    obs = {"p%d" % j: cols[j] for j in range(len(dims))}
    pe = _ParzenEstimator(obs, sp, params)
    q = {"p%d" % j: qcols[j] for j in range(len(dims))}
    lp = pe.log_pdf(q)
    X = np.array(cols).T if n else np.zeros((0, len(dims)))
    Q = np.array(qcols).T
    return {
        "dims": [{"kind": k, "levels": lv} for k, lv in dims],
        "n": n, "m": m,
        "X": X.ravel().tolist(), "Q": Q.ravel().tolist(),
        "log_pdf": [float(v) for v in lp],
    }


def split_case(rng, n_complete, n_pruned, n_running):
    study = optuna.create_study(direction="minimize")
    dist = {"x": FloatDistribution(0.0, 1.0)}
    states = (["complete"] * n_complete + ["pruned"] * n_pruned + ["running"] * n_running)
    rng.shuffle(states)
    ys, steps = [], []
    for st in states:
        x = float(rng.uniform())
        if st == "complete":
            # Some ties, to check that they go by trial number.
            y = float(rng.integers(0, 6))
            study.add_trial(create_trial(params={"x": x}, distributions=dist, value=y))
            ys.append(y)
            steps.append(0)
        elif st == "pruned":
            k = int(rng.integers(1, 4))
            iv = {s: float(rng.integers(0, 6)) for s in range(k)}
            study.add_trial(create_trial(params={"x": x}, distributions=dist,
                                         state=TrialState.PRUNED, intermediate_values=iv))
            ys.append(iv[k - 1])
            steps.append(k)
        else:
            study.add_trial(create_trial(params={"x": x}, distributions=dist,
                                         state=TrialState.RUNNING))
            ys.append(float("nan"))
            steps.append(0)
    trials = study.get_trials(deepcopy=False)
    n_fin = sum(t.state != TrialState.RUNNING for t in trials)
    below, _ = _split_trials(study, trials, default_gamma(n_fin))
    good = sorted(t.number for t in below)
    return {
        "states": states, "y": [None if math.isnan(v) else v for v in ys], "steps": steps,
        "good": good,
    }


def main():
    rng = np.random.default_rng(20261205)
    parzen = [
        parzen_case(rng, [("real", 0)], 0, 5),
        parzen_case(rng, [("real", 0)], 1, 5),
        parzen_case(rng, [("real", 0), ("int", 12), ("cat", 3)], 6, 10),
        parzen_case(rng, [("int", 40), ("real", 0)], 30, 10),
        parzen_case(rng, [("cat", 4), ("int", 200), ("real", 0), ("real", 0)], 120, 12),
    ]
    split = [
        split_case(rng, 12, 0, 0),
        split_case(rng, 8, 6, 3),
        split_case(rng, 3, 15, 2),
        split_case(rng, 260, 20, 4),
    ]
    json.dump({"parzen": parzen, "split": split}, sys.stdout, indent=1)
    sys.stdout.write("\n")


optuna.logging.set_verbosity(optuna.logging.WARNING)
main()
