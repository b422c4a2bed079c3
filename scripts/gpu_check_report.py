#!/usr/bin/env python3
"""Comparisons and the summary table of scripts/gpu-check.sh (Python standard library only).

  gpu_check_report.py runs CPU_RUN_DIR CUDA_RUN_DIR --loss-tol X --gn-tol Y [--show JSON]
      Compares two runs of the same experiment (runs/<id>/ of ftlab's workspace): the loss
      and gradient norm of every step (relative difference, worst step), the tuned model's
      test loss, and the greedy generations (predictions/test.jsonl) output by output.
      Prints one JSON object; exit 0 when the traces are within the tolerances, 1 if not.
  gpu_check_report.py bench FTLAB_JSON TORCH_JSONL
      ftlab bench --json (train) against the fastest torch_gpu_baseline.py line of the same
      method: tokens/s ratio. Prints one JSON object.
  gpu_check_report.py table ROWS_TSV
      The summary table (check, status, detail) of the rows the script recorded.
  gpu_check_report.py runs-row COMPARE_JSON SECONDS | bench-row RATIO_JSON BATCH |
                      decode-row BENCH_JSON
      One row's "STATUS<tab>DETAIL" (status ok, FAIL, slow or info) from those results.
"""
import json
import sys


def read_jsonl(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def trace(run_dir, name):
    """{step: value} of a train metric from metrics.jsonl."""
    return {m["step"]: m["value"] for m in read_jsonl(run_dir + "/metrics.jsonl")
            if m.get("split") == "train" and m.get("name") == name}


def result(run_dir, split, metric):
    for m in read_jsonl(run_dir + "/metrics.jsonl"):
        if m.get("split") == split and m.get("metric") == metric and \
                m.get("model", "tuned") == "tuned":
            return m.get("value")
    return None


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def cmd_runs(argv):
    cpu, cuda = argv[0], argv[1]
    opts = dict(zip(argv[2::2], argv[3::2]))
    loss_tol, gn_tol = float(opts["--loss-tol"]), float(opts["--gn-tol"])
    out = {"cpu": cpu, "cuda": cuda, "loss_tol": loss_tol, "gn_tol": gn_tol}
    ok = True
    for name, tol in (("loss", loss_tol), ("grad_norm", gn_tol)):
        a, b = trace(cuda, name), trace(cpu, name)
        steps = sorted(b)
        worst, worst_step = 0.0, None
        missing = [s for s in steps if s not in a]
        for s in steps:
            if s in a:
                r = rel(a[s], b[s])
                if r != r:  # NaN
                    r = float("inf")
                if r > worst:
                    worst, worst_step = r, s
        out[name] = {"steps": len(steps), "missing": len(missing), "worst_rel": worst,
                     "worst_step": worst_step,
                     "first": [a.get(steps[0]), b[steps[0]]] if steps else None,
                     "last": [a.get(steps[-1]), b[steps[-1]]] if steps else None}
        if not steps or missing or worst > tol:
            ok = False
    tl_a, tl_b = result(cuda, "test", "loss"), result(cpu, "test", "loss")
    out["test_loss"] = [tl_a, tl_b]
    if tl_a is None or tl_b is None or rel(tl_a, tl_b) > loss_tol:
        ok = False
    pa = {p["example"]: p.get("output", "")
          for p in read_jsonl(cuda + "/predictions/test.jsonl")}
    pb = {p["example"]: p.get("output", "")
          for p in read_jsonl(cpu + "/predictions/test.jsonl")}
    same = sum(1 for k in pb if k in pa and pa[k] == pb[k])
    out["generations"] = {"n": len(pb), "identical": same,
                          "sample_cuda": next(iter(pa.values()), None),
                          "sample_cpu": next(iter(pb.values()), None)}
    if not pb or len(pa) != len(pb):
        ok = False
    if len(argv) > 2 and "--show" in opts:
        try:
            with open(opts["--show"], encoding="utf-8") as f:
                show = json.load(f)
            for e in show.get("events", []):
                if e.get("kind") in ("device", "device_memory"):
                    out[e["kind"]] = e.get("message")
        except (OSError, ValueError):
            pass
    out["ok"] = ok
    print(json.dumps(out))
    return 0 if ok else 1


def cmd_bench(argv):
    with open(argv[0], encoding="utf-8") as f:
        ours = json.load(f)
    theirs = [t for t in read_jsonl(argv[1]) if t.get("method") == ours.get("method")]
    best = max(theirs, key=lambda t: t["tokens_per_s"]) if theirs else None
    out = {"method": ours.get("method"), "precision": ours.get("precision"),
           "backend": ours.get("backend"),
           "ftlab_tokens_per_s": ours.get("tokens_per_s"), "mfu": ours.get("mfu"),
           "peak_tflops": ours.get("peak_bf16_tflops", (ours.get("peak_gflops") or 0) / 1e3),
           "peak_memory_bytes": ours.get("peak_device_bytes",
                                         (ours.get("peak_resident_gib") or 0) * 2**30)}
    if best:
        out.update({"torch_tokens_per_s": best["tokens_per_s"],
                    "torch_precision": best["precision"],
                    "torch_peak_memory_bytes": best.get("peak_memory_bytes"),
                    "ratio": ours["tokens_per_s"] / best["tokens_per_s"],
                    "torch_all": {t["precision"]: t["tokens_per_s"] for t in theirs}})
    print(json.dumps(out))
    return 0


def gib(b):
    return (b or 0) / 2**30


def cmd_runs_row(argv):
    with open(argv[0], encoding="utf-8") as f:
        r = json.load(f)
    lo, gn, gen = r["loss"], r["grad_norm"], r["generations"]
    tl = r["test_loss"]
    first = lo["first"] or [None, None]
    last = lo["last"] or [None, None]
    d = ("loss %s -> %s, worst step rel %.1e (tol %.0e); grad norm worst rel %.1e (tol %.0e); "
         "test loss %s; generations identical %d/%d; %s; %s s" % (
             "%.4f" % first[0] if first[0] is not None else "?",
             "%.4f" % last[0] if last[0] is not None else "?", lo["worst_rel"], r["loss_tol"],
             gn["worst_rel"], r["gn_tol"],
             "%.4f vs %.4f" % tuple(tl) if None not in tl else "missing", gen["identical"],
             gen["n"], r.get("device_memory") or "no device_memory event", argv[1]))
    print("%s\t%s" % ("ok" if r["ok"] else "FAIL", d))
    return 0


def cmd_bench_row(argv):
    with open(argv[0], encoding="utf-8") as f:
        r = json.load(f)
    d = ("ftlab %s %s B%s: %.0f tokens/s, MFU %.1f%% of %.1f TFLOP/s (measured), peak %s "
         "memory %.2f GiB" % (r["backend"], r["precision"], argv[1], r["ftlab_tokens_per_s"],
                              100 * r["mfu"], r["peak_tflops"],
                              "device" if r["backend"] == "cuda" else "resident",
                              gib(r["peak_memory_bytes"])))
    if "ratio" in r:
        tm = r["torch_peak_memory_bytes"]  # None off CUDA: torch does not track it there
        d += "; torch+peft %s: %.0f tokens/s%s; ftlab/torch = %.2fx" % (
            r["torch_precision"], r["torch_tokens_per_s"],
            ", %.2f GiB" % gib(tm) if tm is not None else "", r["ratio"])
        print("%s\t%s" % ("ok" if r["ratio"] >= 1 else "slow", d))
    else:
        print("info\t%s; no torch baseline (logs/torch-*.log)" % d)
    return 0


def cmd_decode_row(argv):
    with open(argv[0], encoding="utf-8") as f:
        r = json.load(f)
    a, b = r["runs"]
    print("info\t1 prompt %.0f tokens/s (%.0f%% of the weight-read bound), %d prompts %.0f "
          "tokens/s; prefill %.0f tokens/s; peak %s memory %.2f GiB" % (
              a["decode_tokens_per_s"],
              100 * a["decode_tokens_per_s"] / r["decode_bound_tokens_per_s"], b["prompts"],
              b["decode_tokens_per_s"], b["prefill_tokens_per_s"],
              "device" if r["backend"] == "cuda" else "resident",
              gib(r.get("peak_device_bytes", (r.get("peak_resident_gib") or 0) * 2**30))))
    return 0


def cmd_table(argv):
    rows = []
    with open(argv[0], encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                rows.append(parts)
    # rows are named "N name": 0 the bundle, 1 device checks, 2 training, 3 speed
    rows.sort(key=lambda r: r[0].split(" ", 1)[0] if r[0][:1].isdigit() else "9")
    w0 = max([len("check")] + [len(r[0]) for r in rows])
    w1 = max([len("status")] + [len(r[1]) for r in rows])
    print(f"| {'check':<{w0}} | {'status':<{w1}} | detail")
    print(f"|-{'-' * w0}-|-{'-' * w1}-|-------")
    for c, s, d in rows:
        print(f"| {c:<{w0}} | {s:<{w1}} | {d}")
    n = {k: sum(1 for r in rows if r[1] == k) for k in ("ok", "FAIL", "skip", "info", "slow")}
    print(f"{n['ok']} ok, {n['FAIL']} failed, {n['skip']} skipped, {n['slow']} slower than "
          f"the baseline, {n['info']} info")
    return 0


def main():
    cmds = {"runs": cmd_runs, "bench": cmd_bench, "table": cmd_table, "runs-row": cmd_runs_row,
            "bench-row": cmd_bench_row, "decode-row": cmd_decode_row}
    if len(sys.argv) < 3 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
