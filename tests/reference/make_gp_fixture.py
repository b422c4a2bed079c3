#!/usr/bin/env python3
"""Gaussian-process fixture for runner/bayes.c (Matern 5/2 with one length scale per input,
a signal variance and a noise variance).

How it was made: `python3 tests/reference/make_gp_fixture.py > tests/reference/gp_fixture.json`
with scikit-learn 1.9.1 and numpy 2.4.6 from PyPI. Inputs come from
numpy's default_rng(20260601). For each case it records scikit-learn's log marginal
likelihood of y and its gradient (GaussianProcessRegressor with ConstantKernel * Matern(nu=2.5)
+ WhiteKernel, fixed hyperparameters, no y normalisation), and the posterior mean and the
latent variance (predictive variance minus the noise) at test points.

theta is written in ftlab's order: logs of the length scales, of the signal variance and of
the noise variance (scikit-learn's order is signal, length scales, noise).
"""
import json
import sys

import numpy as np
import sklearn
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

assert sklearn.__version__ == "1.9.1", sklearn.__version__


def case(rng, n, de, m, ls, sf2, sn2):
    X = rng.uniform(size=(n, de))
    y = np.sin(3.0 * X.sum(axis=1)) + 0.3 * rng.normal(size=n)
    Xs = rng.uniform(size=(m, de))
    kernel = ConstantKernel(sf2) * Matern(length_scale=ls, nu=2.5) + WhiteKernel(sn2)
    # ftlab adds a jitter of 1e-10 * sf2 to the diagonal; alpha does the same here.
    gp = GaussianProcessRegressor(kernel=kernel, alpha=1e-10 * sf2, optimizer=None,
                                  normalize_y=False)
    gp.fit(X, y)
    th = gp.kernel_.theta  # [log sf2, log ls..., log sn2]
    lml, grad = gp.log_marginal_likelihood(th, eval_gradient=True)
    mean, std = gp.predict(Xs, return_std=True)
    var = std ** 2 - sn2
    order = list(range(1, 1 + de)) + [0, de + 1]
    return {
        "n": n, "de": de, "m": m,
        "X": X.ravel().tolist(), "y": y.tolist(), "Xs": Xs.ravel().tolist(),
        "theta": [float(th[i]) for i in order],
        "lml": float(lml), "grad": [float(grad[i]) for i in order],
        "mean": mean.tolist(), "var": var.tolist(),
    }


def main():
    rng = np.random.default_rng(20260601)
    cases = [
        case(rng, 6, 1, 5, [0.3], 1.0, 1e-2),
        case(rng, 12, 3, 6, [0.2, 0.5, 1.5], 2.0, 1e-3),
        case(rng, 20, 2, 8, [0.05, 0.8], 0.5, 0.1),
    ]
    json.dump({"cases": cases}, sys.stdout, indent=1)
    sys.stdout.write("\n")


main()
