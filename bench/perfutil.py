#!/usr/bin/python3
"""Helpers of bench/run.sh (standard library only).

  perfutil.py mkdata DIR            random MNIST-shaped IDX files (60000 train, 512 test) in DIR
  perfutil.py layers                `aetrain check` output on stdin -> roofline layer arguments
  perfutil.py run RUN_DIR           a finished aetrain run -> "samples_per_s allreduce_share openblas_core"
  perfutil.py summary RESULTS_DIR   roofline.csv + aetrain.csv + torch.csv -> summary.csv and the tables
  perfutil.py buckets OUT.csv       bench/buckets.sh rows -> a markdown table of medians per setting
  perfutil.py steps RUN_DIR [SKIP]  a run with train.step_times -> how the ranks' step times differ, what
                                    waiting for the slowest costs, and what train.balance would save
"""
import csv
import json
import math
import os
import struct
import sys


def mkdata(d):
    os.makedirs(d, exist_ok=True)

    def images(name, n):
        with open(os.path.join(d, name), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28))
            f.write(os.urandom(n * 784))

    def labels(name, n):
        with open(os.path.join(d, name), "wb") as f:
            f.write(struct.pack(">II", 0x801, n))
            f.write(bytes(b % 10 for b in os.urandom(n)))

    images("train-images-idx3-ubyte", 60000)
    labels("train-labels-idx1-ubyte", 60000)
    images("t10k-images-idx3-ubyte", 512)  # a small test set: the final evaluation is not timed
    labels("t10k-labels-idx1-ubyte", 512)


def layers():
    """dense:IN:OUT / conv:C:F:K:OH:OW for each layer with an sgemm; '-a' first when model layer 0
    has none (then the first sgemm layer needs its input gradient too)."""
    out, first = [], None
    for line in sys.stdin:
        f = line.split()
        if len(f) < 8 or not f[0].isdigit():
            continue
        idx, kind, ins, outs, flops = int(f[0]), f[2], f[3], f[4], float(f[7])
        if first is None:
            first = idx
        cin = [int(v) for v in ins.split("x")]
        cout = [int(v) for v in outs.split("x")]
        if kind == "dense":
            if any(a.startswith("tied") for a in f):
                sys.exit("perfutil.py: tied dense layers are not modelled by the roofline")
            out.append("dense:%d:%d" % (cin[0] * cin[1] * cin[2], cout[0]))
        elif kind == "conv":
            c, fl, oh, ow = cin[0], cout[0], cout[1], cout[2]
            k = int(round(math.sqrt(flops / (2.0 * c * fl * oh * ow))))
            out.append("conv:%d:%d:%d:%d:%d" % (c, fl, k, oh, ow))
        elif kind in ("maxpool", "upsample", "act", "flatten", "reshape"):
            continue
        else:
            sys.exit("perfutil.py: the roofline does not model '%s' layers" % kind)
        if len(out) == 1 and idx != 0:
            out.insert(0, "-a")
    print(" ".join(out))


def run(d):
    with open(os.path.join(d, "result.json")) as f:
        res = json.load(f)
    with open(os.path.join(d, "run.json")) as f:
        meta = json.load(f)
    # allreduce share of the step time over all epochs, weighted by each epoch's step time
    t = a = 0.0
    prev = 0
    with open(os.path.join(d, "metrics.csv")) as f:
        for row in csv.DictReader(f):
            sps, share, step = float(row["samples_per_s"]), float(row["allreduce_frac"]), int(row["step"])
            if sps > 0:
                step_t = (step - prev) / sps  # the epoch's step time, in units of the batch
                t += step_t
                a += step_t * share
            prev = step
    print("%.6g %.4f %s" % (res["samples_per_s"], a / t if t else 0.0, meta.get("openblas_core", "?")))


# ---- summary -------------------------------------------------------------------------------------

def read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def median(v):
    v = sorted(x for x in v if not math.isnan(x))
    if not v:
        return float("nan")
    h = len(v) // 2
    return v[h] if len(v) % 2 else 0.5 * (v[h - 1] + v[h])


def ratio(a, b):
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def fmt(v, digits=2):
    if isinstance(v, str):
        return v
    if v is None or math.isnan(v):
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    return "%.*f" % (digits, v)


def table(rows, head):
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(str(h).rjust(w[i]) if i else str(h).ljust(w[i]) for i, h in enumerate(head))]
    for r in rows:
        lines.append("  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r)))
    return "\n".join(lines)


def medians(rows, key, fields):
    """rows of several rounds -> {key value: the first row with each field replaced by its median over
    the rounds, and "_rounds": that key's samples_per_s per round, in round order}."""
    out = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    for k, g in out.items():
        g.sort(key=lambda r: int(r.get("round") or 1))
        m = dict(g[0])
        for f in fields:
            m[f] = "%.6g" % median([num(r.get(f)) for r in g])
        m["_rounds"] = [num(r["samples_per_s"]) for r in g]
        out[k] = m
    return out


def spread(s, k):
    """a ratio, with its range over the rounds when there are several"""
    if s.get("rounds", 1) > 1 and not math.isnan(s[k + "_min"]):
        return "%s (%s-%s)" % (fmt(s[k]), fmt(s[k + "_min"]), fmt(s[k + "_max"]))
    return fmt(s[k])


def summary(d):
    roof = read(os.path.join(d, "roofline.csv"))
    ae = read(os.path.join(d, "aetrain.csv"))
    pt = read(os.path.join(d, "torch.csv"))
    models = []
    for r in ae + roof:
        m = r.get("model", "")
        if m and m != "peak" and m not in models:
            models.append(m)
    peak = {r["threads"]: num(r["peak_gflops"]) for r in roof if r["model"] == "peak"}
    out = []
    for m in models:
        R = {r["layout"]: r for r in roof if r["model"] == m}
        A = medians([r for r in ae if r["model"] == m], "layout", ("samples_per_s", "allreduce_share"))
        T = medians([r for r in pt if r["model"] == m and not r["setting"].startswith("best=")], "setting",
                    ("samples_per_s",))
        s = {"model": m}
        s["rounds"] = max((len(v["_rounds"]) for v in A.values()), default=0)
        s["batch"] = A.get("p1t1", {}).get("global_batch", "")
        s["gemm_gflop_per_sample"] = ratio(num(R.get("p1t1", {}).get("step_gflop")), num(s["batch"] or "nan"))
        for lay in ("p1t2", "p1t1", "p2t1"):
            s["roof_" + lay] = num(R.get(lay, {}).get("samples_per_s_bound"))
            s["roof_gflops_" + lay] = num(R.get(lay, {}).get("gflops"))
        for lay in ("p1t2", "p1t1", "p2t1", "p2t1w", "p2t1wb", "p1t1x2"):
            s["ae_" + lay] = num(A.get(lay, {}).get("samples_per_s"))
        s["ae_allreduce_share_p2t1"] = num(A.get("p2t1", {}).get("allreduce_share"))
        s["ae_allreduce_share_p2t1w"] = num(A.get("p2t1w", {}).get("allreduce_share"))
        for st in ("t1", "t2", "ddp2", "ddp2w"):
            s["torch_" + st] = num(T.get(st, {}).get("samples_per_s"))
        lays = [(s["ae_" + k], k) for k in ("p1t2", "p1t1", "p2t1") if not math.isnan(s["ae_" + k])]
        best = max(lays) if lays else (float("nan"), "-")
        s["ae_best"], s["ae_best_layout"] = best
        tb = [(s["torch_" + k], k) for k in ("t1", "t2", "ddp2") if not math.isnan(s["torch_" + k])]
        tbest = max(tb) if tb else (float("nan"), "-")
        s["torch_best"], s["torch_best_setting"] = tbest
        for lay in ("p1t2", "p1t1", "p2t1"):
            s["ae_over_roof_" + lay] = ratio(s["ae_" + lay], s["roof_" + lay])
        s["ae_over_roof_best"] = ratio(s["ae_best"], s["roof_" + best[1]]) if best[1] != "-" else float("nan")
        s["ae_best_over_torch_best"] = ratio(s["ae_best"], s["torch_best"])
        s["ae_p1t1_over_torch_t1"] = ratio(s["ae_p1t1"], s["torch_t1"])
        s["ae_p1t2_over_torch_t2"] = ratio(s["ae_p1t2"], s["torch_t2"])
        s["ae_p2t1_over_torch_ddp2"] = ratio(s["ae_p2t1"], s["torch_ddp2"])
        s["ae_strong_speedup_p2"] = ratio(s["ae_p2t1"], s["ae_p1t1"])
        s["ddp_strong_speedup_p2"] = ratio(s["torch_ddp2"], s["torch_t1"])
        s["ae_weak_eff_p2"] = ratio(s["ae_p2t1w"], 2 * s["ae_p1t1"])
        s["ddp_weak_eff_p2"] = ratio(s["torch_ddp2w"], 2 * s["torch_t1"])
        s["aebal_weak_eff_p2"] = ratio(s["ae_p2t1wb"], 2 * s["ae_p1t1"])
        # the same ratio within each round: its spread over the rounds
        for key, D, num_k, den_k in (("ae", A, "p2t1w", "p1t1"), ("ddp", T, "ddp2w", "t1"),
                                     ("aebal", A, "p2t1wb", "p1t1")):
            per = [ratio(num(w), 2 * num(o)) for w, o in zip(D.get(num_k, {}).get("_rounds", []),
                                                            D.get(den_k, {}).get("_rounds", []))]
            per = [x for x in per if not math.isnan(x)]
            s[key + "_weak_eff_p2_min"] = min(per) if per else float("nan")
            s[key + "_weak_eff_p2_max"] = max(per) if per else float("nan")
        s["ae_over_ddp_weak_eff"] = ratio(s["ae_weak_eff_p2"], s["ddp_weak_eff_p2"])
        # two independent P = 1 runs side by side: the machine's ceiling of weak scaling, and aetrain's
        # weak efficiency against it (what the P = 2 step's sum and waiting cost)
        s["pair_weak_eff_p2"] = ratio(s["ae_p1t1x2"], 2 * s["ae_p1t1"])
        s["ae_weak_over_pair"] = ratio(s["ae_weak_eff_p2"], s["pair_weak_eff_p2"])
        s["peak_gflops_t1"], s["peak_gflops_t2"] = peak.get("1", float("nan")), peak.get("2", float("nan"))
        out.append(s)
    if out:
        with open(os.path.join(d, "summary.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0]))
            w.writeheader()
            for s in out:
                w.writerow({k: (("%.6g" % v) if isinstance(v, float) else v) for k, v in s.items()})

    print("\nsamples/s (roofline = the step's sgemm calls alone; pN tM = N ranks x M threads; "
          "w = weak scaling, batch per rank fixed; p1t1x2 = two independent P = 1 runs side by side)")
    head = ["model", "batch", "roof p1t2", "roof p1t1", "roof p2t1", "ae p1t2", "ae p1t1", "ae p2t1", "ae p2t1w",
            "ae p2t1wb", "ae p1t1x2", "pt t1", "pt t2", "ddp2", "ddp2w"]
    rows = [[s["model"], s["batch"]] + [fmt(s[k]) for k in (
        "roof_p1t2", "roof_p1t1", "roof_p2t1", "ae_p1t2", "ae_p1t1", "ae_p2t1", "ae_p2t1w", "ae_p2t1wb", "ae_p1t1x2",
        "torch_t1",
        "torch_t2", "torch_ddp2", "torch_ddp2w")] for s in out]
    print(table(rows, head))
    nr = max((s["rounds"] for s in out), default=1)
    print("\nratios (each measured side by side in this run%s)" % (
        "; medians of %d rounds, weak: median (range of the rounds' own ratios)" % nr if nr > 1 else ""))
    head = ["model", "ae best", "ae/roof", "ae/roof p1t1", "pt best", "ae/pt", "ae/pt p1t1", "ae/ddp p2",
            "weak ae", "weak ae bal", "weak ddp", "weak ae/ddp", "weak pair", "weak ae/pair", "allreduce p2"]
    rows = [[s["model"], s["ae_best_layout"], fmt(s["ae_over_roof_best"]), fmt(s["ae_over_roof_p1t1"]),
             s["torch_best_setting"], fmt(s["ae_best_over_torch_best"]), fmt(s["ae_p1t1_over_torch_t1"]),
             fmt(s["ae_p2t1_over_torch_ddp2"]), spread(s, "ae_weak_eff_p2"), spread(s, "aebal_weak_eff_p2"),
             spread(s, "ddp_weak_eff_p2"),
             fmt(s["ae_over_ddp_weak_eff"]), fmt(s["pair_weak_eff_p2"]), fmt(s["ae_weak_over_pair"]),
             fmt(100 * s["ae_allreduce_share_p2t1"], 0) + "%" if not math.isnan(s["ae_allreduce_share_p2t1"])
             else "-"] for s in out]
    print(table(rows, head))
    if peak:
        print("\nsgemm 2048^3 peak: %s GFLOP/s at 1 thread, %s at 2 threads; OpenBLAS core %s" % (
            fmt(peak.get("1", float("nan")), 1), fmt(peak.get("2", float("nan")), 1),
            next((r["core"] for r in roof if r["model"] == "peak"), "?")))


# ---- buckets --------------------------------------------------------------------------------------

def buckets(path):
    """Medians over rounds of bench/buckets.sh rows per (label, config, bucket_mb, comm_thread), and
    of the ratio of samples/s to bucket_mb = 0 of the same round (with its range)."""
    rows = read(path)
    base = {(r["label"], r["config"], r["round"]): num(r["samples_per_s"]) for r in rows if num(r["bucket_mb"]) == 0}
    groups = {}
    for r in rows:
        groups.setdefault((r["label"], r["config"], r["bucket_mb"], r["comm_thread"]), []).append(r)
    print("| model | where | bucket_mb | comm_thread | samples/s | ratio (range) | allreduce_frac | exposed | rounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (label, config, mb, thread), g in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], num(kv[0][2]),
                                                                             kv[0][3])):
        ratios = [ratio(num(r["samples_per_s"]), base.get((label, config, r["round"]), float("nan"))) for r in g]
        ok = [x for x in ratios if not math.isnan(x)]
        rng = " (%.2f-%.2f)" % (min(ok), max(ok)) if ok and num(mb) != 0 else ""
        print("| %s | %s | %s | %s | %s | %s%s | %s | %s | %d |" % (
            config, label, mb, "-" if num(mb) == 0 else thread, fmt(median([num(r["samples_per_s"]) for r in g])),
            fmt(median(ratios)), rng, fmt(median([num(r["allreduce_frac"]) for r in g])),
            fmt(median([num(r["allreduce_exposed_frac"]) for r in g])), len(g)))


def step_work(d, skip=10):
    """(P, work, samples) of a run with train.step_times: work[q][i] is rank q's time between the
    ranks' common exit from step s - 1's sum and its arrival at step s's (its `after` of s - 1 plus
    its `compute` of s), samples[q][i] its samples of step s, for the steps s > skip every rank has."""
    import glob
    files = sorted(glob.glob(os.path.join(d, "steps", "rank-*.csv")))
    if not files:
        sys.exit("perfutil.py: no steps/rank-*.csv in %s (train.step_times = true writes them)" % d)
    ranks = [{int(r["step"]): r for r in read(f)} for f in files]
    common = sorted(set.intersection(*[set(r) for r in ranks]))
    common = [s for s in common if s - 1 in ranks[0] and s > skip]
    if len(common) < 3:
        sys.exit("perfutil.py: %s: fewer than 3 steps after the %d warm-up steps" % (d, skip))
    work = [[num(r[s - 1]["after_s"]) + num(r[s]["compute_s"]) for s in common] for r in ranks]
    samples = [[num(r[s]["samples"]) for s in common] for r in ranks]
    return len(ranks), work, samples, ranks, common


def steps(d, skip=10):
    """The ranks' per-step times of a run with train.step_times (steps/rank-R.csv), after `skip`
    warm-up steps. A rank's work in step s is what it does between the ranks' common exit from step
    s - 1's sum and its arrival at step s's: its `after` of s - 1 plus its `compute` of s. A
    synchronous step lasts the largest work; the ratio of the mean work to the mean largest one is
    what synchronization leaves of the ranks' speed (1 = no waiting). The lag-1 correlation of a
    rank's deviation from the step's mean says how persistent the differences are (train.balance
    can only follow persistent ones); the replay gives the ranks shares by the running mean of their
    speeds (newest half, clamped to 5/4 of the equal share, as aetrain does), each rank's work in
    proportion to its samples."""
    P, work, samples, ranks, common = step_work(d, skip)
    n = len(common)
    mean_w = [sum(w) / n for w in work]
    step_mean = [sum(work[q][i] for q in range(P)) / P for i in range(n)]
    step_max = [max(work[q][i] for q in range(P)) for i in range(n)]
    eff = sum(step_mean) / sum(step_max)

    def pct(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, int(p * len(v)))]

    def lag1(x):
        m = sum(x) / len(x)
        a = sum((x[i] - m) * (x[i + 1] - m) for i in range(len(x) - 1))
        b = sum((v - m) ** 2 for v in x)
        return a / b if b > 0 else float("nan")

    print("%d ranks, %d steps after %d warm-up steps; times in ms" % (P, n, skip))
    print(table([[str(q), fmt(mean_w[q] * 1e3), fmt(pct(work[q], 0.1) * 1e3), fmt(pct(work[q], 0.5) * 1e3),
                  fmt(pct(work[q], 0.9) * 1e3),
                  fmt(sum(num(ranks[q][s]["sum_s"]) for s in common) / n * 1e3),
                  fmt(sum(num(ranks[q][s]["step_s"]) for s in common) / n * 1e3),
                  fmt(lag1([work[q][i] - step_mean[i] for i in range(n)]))] for q in range(P)],
                ["rank", "work mean", "p10", "p50", "p90", "sum+wait", "step", "lag-1 corr"]))
    print("mean work %.3f ms, mean of the largest %.3f ms: synchronization keeps %.3f of the ranks' speed"
          % (sum(step_mean) / n * 1e3, sum(step_max) / n * 1e3, eff))
    # the replay: per-sample times of this run, shares by the running mean of speeds, clamped
    tot, w, ready = 0.0, [0.0] * P, False
    for i in range(n):
        per = [work[q][i] / samples[q][i] if samples[q][i] > 0 else float("nan") for q in range(P)]
        gb = sum(samples[q][i] for q in range(P))
        if ready and P > 1:
            top = max(w)
            lo = top * (4 * P - 5) / (5 * (P - 1))
            c = [min(max(x, lo), top) for x in w]
            share = [gb * x / sum(c) for x in c]
        else:
            share = [gb / P] * P
        tot += max(per[q] * share[q] for q in range(P))
        if all(x == x and x > 0 for x in per):
            w = [1 / per[q] if not ready else (w[q] + 1 / per[q]) / 2 for q in range(P)]
            ready = True
    print("replayed with train.balance's shares: the mean step %.3f ms, synchronization keeps %.3f"
          % (tot / n * 1e3, sum(step_mean) / tot))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "mkdata" and len(sys.argv) == 3:
        mkdata(sys.argv[2])
    elif cmd == "layers":
        layers()
    elif cmd == "run" and len(sys.argv) == 3:
        run(sys.argv[2])
    elif cmd == "summary" and len(sys.argv) == 3:
        summary(sys.argv[2])
    elif cmd == "buckets" and len(sys.argv) == 3:
        buckets(sys.argv[2])
    elif cmd == "steps" and len(sys.argv) in (3, 4):
        steps(sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 10)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
