#!/usr/bin/env python3
"""Hyperband decisions of W&B's own sweeps library on recorded learning curves, for
tests/unit/test_hyperband.c.

How it was made: `pip install --target DIR --no-deps sweeps==0.3.0 jsonref` and `pip install
--target DIR jsonschema` (W&B's sweeps library from PyPI; its other imports, numpy, scipy,
scikit-learn and pydantic, came from the Python that runs it: numpy 2.4.6), then
`PYTHONPATH=DIR python3 tests/reference/make_hyperband_fixture.py >
tests/reference/hyperband_fixture.json`.

The curves: 14 runs of a decaying validation loss (seeded, random.Random(20260601)), some
with a non-finite value (W&B ignores those), started at different times and logging at
different rates. The timeline is the merge of every run's log times. For each early_terminate
configuration the timeline is replayed: at each event one run logs its next value, then
`sweeps.stop_runs` is asked about the whole sweep (runs that logged everything are finished,
runs it stopped before are killed) and the decision for the run that just logged is
recorded; a stopped run logs nothing more. Non-finite values are written as null. Each
decision: {"run", "n" (values logged), "stop",
"band", "threshold"} (band 0 and threshold null when no band applies yet).
"""
import json
import math
import random
import sys
import warnings

warnings.filterwarnings("ignore")

import sweeps  # noqa: E402
from sweeps import RunState, SweepRun, stop_runs  # noqa: E402

CONFIGS = [
    {"type": "hyperband", "min_iter": 2, "eta": 3},
    {"type": "hyperband", "min_iter": 1, "eta": 2, "strict": False},
    {"type": "hyperband", "max_iter": 12, "s": 2, "eta": 3},
    {"type": "hyperband", "max_iter": 16, "s": 3, "eta": 2, "strict": False},
    {"type": "hyperband", "min_iter": 2, "eta": 2.5},
]


def curves(rng):
    runs = []
    for i in range(14):
        a = rng.uniform(0.2, 1.0)
        b = rng.uniform(0.5, 2.0)
        tau = rng.uniform(2.0, 8.0)
        n = rng.randint(5, 16)
        vals = [a + b * math.exp(-t / tau) + rng.gauss(0, 0.05) for t in range(n)]
        if i in (3, 9):
            vals.insert(rng.randint(1, n - 1), float("nan"))
        runs.append({"start": rng.uniform(0, 10), "period": rng.uniform(0.7, 1.6),
                     "values": vals})
    return runs


def timeline(runs):
    ev = []
    for i, r in enumerate(runs):
        for k in range(len(r["values"])):
            ev.append((r["start"] + k * r["period"], i))
    ev.sort()
    return [i for _, i in ev]


def replay(runs, events, et, goal, metric):
    cfg = {"method": "grid", "metric": {"name": metric, "goal": goal},
           "early_terminate": et, "parameters": {"a": {"values": [1]}}}
    logged = [0] * len(runs)
    stopped = [False] * len(runs)
    out = []
    for i in events:
        if stopped[i]:
            continue
        logged[i] += 1
        sw = []
        for j, r in enumerate(runs):
            if logged[j] == 0:
                continue
            hist = [{metric: v} for v in r["values"][:logged[j]]]
            if stopped[j]:
                state = RunState.killed
            elif j != i and logged[j] == len(r["values"]):
                state = RunState.finished
            else:
                state = RunState.running
            sw.append(SweepRun(name=str(j), state=state, history=hist))
        to_stop = {int(r.name) for r in stop_runs(cfg, sw)}
        me = next(r for r in sw if r.name == str(i))
        # W&B shares one list of lines between the runs' infos: find this run's line.
        info = me.early_terminate_info or {}
        line = next((x for x in info.get("lines", []) if x.startswith(f"Run: {i} ")), "")
        band, thr = 0, None
        if "(Band:" in line:
            part = line.split("(Band: ")[1]
            band = int(part.split(" ")[0])
            thr = float(part.split("Threshold: ")[1].split(")")[0])
        out.append({"run": i, "n": logged[i], "stop": i in to_stop, "band": band,
                    "threshold": thr})
        if i in to_stop:
            stopped[i] = True
    return out


def main():
    rng = random.Random(20260601)
    runs = curves(rng)
    events = timeline(runs)
    cases = []
    for et in CONFIGS:
        for goal in ("minimize", "maximize"):
            # maximize: the same curves negated (an accuracy-like metric)
            rr = runs if goal == "minimize" else [
                dict(r, values=[-v for v in r["values"]]) for r in runs]
            dec = replay(rr, events, et, goal, "val_loss")
            cases.append({"early_terminate": et, "goal": goal, "decisions": dec})
    # NaN is written as null (JSON has no NaN).
    values = [[v if math.isfinite(v) else None for v in r["values"]] for r in runs]
    json.dump({"sweeps_version": sweeps.__version__, "runs": values, "events": events,
               "cases": cases}, sys.stdout, allow_nan=False, separators=(",", ":"))
    sys.stdout.write("\n")


main()
