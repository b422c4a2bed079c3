#!/usr/bin/env python3
"""The peers of ftlab's bayes and tpe searches on the sweep benchmark's objectives.

Runs W&B's bayes search (the `sweeps` library that W&B's server uses) and Optuna's default
TPESampler on the objectives of bench/sweep_trainer.py, over the same search spaces as
bench/sweep/*.yaml, with the same budget and seeds as bench/sweep_bench.sh, and prints the
same columns: median best, median regret, worst regret, and CPU seconds per suggestion
(the objective is a Python function here, not a process, and costs microseconds).

Not part of CI or `make bench` (it needs packages): run it by hand, e.g.
  pip install optuna==5.0.0
  pip install --target DIR --no-deps sweeps==0.3.0 jsonref   # plus numpy, scipy,
                                                             # scikit-learn, pydantic
  PYTHONPATH=DIR python3 bench/sweep_peers.py
Environment: SEEDS (5), BUDGET (20), OBJECTIVES ("branin hartmann3 finetune"),
PEERS ("wandb-bayes optuna-tpe").
"""
import os
import statistics
import sys
import time
import warnings

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_trainer as st  # noqa: E402

warnings.filterwarnings("ignore")

# name -> (kind, spec): the swept parameters of bench/sweep/*.yaml, in trainer argument
# order a, b, c, rank, opt (constants where an objective does not use one).
SPACES = {
    "branin": {"a": ("uniform", 0.0, 10.0), "b": ("uniform", 0.0, 15.0)},
    "hartmann3": {"a": ("uniform", 0.0, 1.0), "b": ("uniform", 0.0, 1.0),
                  "c": ("uniform", 0.0, 1.0)},
    "finetune": {"a": ("log", 1e-5, 1e-1), "rank": ("values", [4, 8, 16, 32, 64]),
                 "opt": ("values", ["adamw", "sgd"]), "c": ("int", 0, 100)},
}
DEFAULTS = {"a": 0.0, "b": 0.0, "c": 0.0, "rank": 8, "opt": "adamw"}
FUNCS = {"branin": st.branin, "hartmann3": st.hartmann3, "finetune": st.finetune}


def evaluate(obj, params):
    p = dict(DEFAULTS, **params)
    return FUNCS[obj](float(p["a"]), float(p["b"]), float(p["c"]), int(p["rank"]), p["opt"])


def wandb_bayes(obj, budget, seed):
    import numpy as np
    from sweeps import RunState, SweepRun, next_run

    params = {}
    for k, (kind, *spec) in SPACES[obj].items():
        if kind == "uniform":
            params[k] = {"distribution": "uniform", "min": spec[0], "max": spec[1]}
        elif kind == "log":
            params[k] = {"distribution": "log_uniform_values", "min": spec[0], "max": spec[1]}
        elif kind == "int":
            params[k] = {"distribution": "int_uniform", "min": spec[0], "max": spec[1]}
        else:
            params[k] = {"values": spec[0]}
    config = {"method": "bayes", "metric": {"name": "loss", "goal": "minimize"},
              "parameters": params}
    np.random.seed(seed)
    runs, best, cpu = [], float("inf"), 0.0
    for i in range(budget):
        t0 = time.process_time()
        sug = next_run(config, runs)
        cpu += time.process_time() - t0
        values = {k: v["value"] for k, v in sug.config.items()}
        f = evaluate(obj, values)
        best = min(best, f)
        runs.append(SweepRun(name=f"r{i}", config=sug.config, state=RunState.finished,
                             summary_metrics={"loss": f}))
    return best, cpu / budget


def optuna_tpe(obj, budget, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        values = {}
        for k, (kind, *spec) in SPACES[obj].items():
            if kind == "uniform":
                values[k] = trial.suggest_float(k, spec[0], spec[1])
            elif kind == "log":
                values[k] = trial.suggest_float(k, spec[0], spec[1], log=True)
            elif kind == "int":
                values[k] = trial.suggest_int(k, spec[0], spec[1])
            else:
                values[k] = trial.suggest_categorical(k, spec[0])
        return evaluate(obj, values)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.process_time()
    study.optimize(objective, n_trials=budget)
    # Optuna's whole loop per trial (the objective itself takes microseconds).
    return study.best_value, (time.process_time() - t0) / budget


PEERS = {"wandb-bayes": wandb_bayes, "optuna-tpe": optuna_tpe}


def main():
    seeds = int(os.environ.get("SEEDS", "5"))
    budget = int(os.environ.get("BUDGET", "20"))
    objectives = os.environ.get("OBJECTIVES", "branin hartmann3 finetune").split()
    peers = os.environ.get("PEERS", "wandb-bayes optuna-tpe").split()
    print(f"sweep peers: budget {budget} runs per sweep, seeds 1..{seeds}")
    print(f"{'objective':<10} {'method':<12} {'median best':>12} {'median regret':>13} "
          f"{'worst regret':>12} {'cpu s/sugg':>10}")
    for obj in objectives:
        for peer in peers:
            bests, cpus = [], []
            for seed in range(1, seeds + 1):
                b, c = PEERS[peer](obj, budget, seed)
                bests.append(b)
                cpus.append(c)
            regrets = [b - st.FSTAR[obj] for b in bests]
            print(f"{obj:<10} {peer:<12} {statistics.median(bests):>12.5g} "
                  f"{statistics.median(regrets):>13.5g} {max(regrets):>12.5g} "
                  f"{statistics.median(cpus):>10.4f}", flush=True)


if __name__ == "__main__":
    main()
