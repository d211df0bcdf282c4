#!/usr/bin/python3
"""A calibrated model of aetrain's data-parallel step time (docs/performance.md, "Projected scaling").

Inputs (bench/scaling-model.sh measures them):
  --layertime CSV   bench/layertime: forward and backward time per sample of every layer and the
                    optimizer's time, 1 thread, at the config's batch
  --allreduce CSV   bench/allreduce.c: seconds of an in-place MPI_Allreduce by bytes and ranks, one
                    label per setup (local, netns2-1gbit, ...)
  --measured CSV    cluster/scaling-study's scaling.csv (optional): the points to validate against
  --overlap-csv CSV aetrain runs with bucket_mb > 0 on the communication thread (optional): the
                    overlap is fitted to the first row's exposed allreduce time

The model of one step on P ranks, b samples per rank:
  compute   = b x sum(forward per sample) + b x sum(backward per sample) + optimizer
              (per-sample times at b: measured at several batches with --layertime-batches,
              interpolated in log(b); else those of the config's batch)
  allreduce = min(ring, recursive doubling) of n bytes:
              ring 2(P-1)/P n beta + 2(P-1) alpha;  recursive doubling ceil(log2 P) (alpha + n beta)
  exposed   = bucket_mb = 0: the allreduce of the whole gradient buffer after backward;
              bucket_mb > 0: the buckets of whole layers (reverse layer order, each >= bucket_mb MB,
              as src/train.c cuts them) each start when backward has passed their first layer and
              run one after the other; during backward they progress at `overlap` x full speed
              (0: nothing hidden, 1: all the backward time after a bucket's start hides it), after
              it at full speed; exposed = the time from the end of backward to the end of the last
              bucket, plus the small allreduce of the step's scalars
  step      = compute + exposed
A setup whose allreduce rows include "nodesum" ones (bench/allreduce.c -N: the ranks of one host
summing through node-shared memory, train.allreduce = node with train.shard_optimizer, aetrain's
default) is fitted to those instead, and each of its P ranks runs 1/P of the optimizer.
alpha and beta of each measured setup are a least-squares fit (relative errors) of the ring
formula to its allreduce times. The projection uses links of --links Gb/s (beta = 8 / rate,
divided by --link-efficiency) with --latency-us alpha, for P = 2, 4, ... --pmax.
With --ranks-per-node L > 1 the projection adds aetrain's default on nodes of L ranks
(train.allreduce = node, bucket_mb = 0, the optimizer sharded over each node), P = N nodes x L:
  nodesum   = the node sum of the S-byte buffer among the node's L ranks: each rank reads its
              chunk of every buffer (S bytes) and writes its own (S / L), at the per-rank rate
              fitted to the nodesum rows (which are L = 2: 1.5 S bytes), and no faster than the
              node's memory moves (L + 1) S bytes at --node-gbs GB/s (0: not limiting), plus the
              fit's alpha per barrier level, ceil(log2 L)
  rails     = N > 1: the ranks of local index q of every node allreduce chunk q (S / L bytes);
              the L rails share one link each way: min(ring, recursive doubling) of S / L bytes
              among N at L x beta
  step      = compute (optimizer / L) + nodesum + rails
With --step-times RUN (a run of P0 >= 2 ranks with train.step_times, e.g. at the config's batch
on this machine) the projection adds "+jitter" variants of the bucketed and the node projections:
each rank's work in a step is the step's common work times (1 + d), d drawn independently for
every rank and step from the run's deviations d = (w_q / mean - 1) x sqrt(P0 / (P0 - 1)) (the
factor makes a deviation from the mean of P0 one from the common value), and a synchronous step
waits for the largest: compute x E[max of P draws of (1 + d)] (Monte Carlo, seeded). A run with
train.balance gives the deviations balance leaves. The draws cannot exceed the run's largest
deviation, so at large P the tail is underestimated.
Weak scaling keeps b = the config's batch; strong keeps the global batch (--strong-batch, default
the config's batch x 64) and gives each rank 1/P of it. Efficiency = T(1 rank) / T(P) (weak) or
T(1 rank) / (P x T(P)) (strong).

Writes into --out: fits.csv, validation.csv, projections.csv, plot.csv (the scaling-study format
with a style column, for `aetrain plot --scaling --log`), summary.json; draws --png with --aetrain.
Python 3 standard library only.
"""
import argparse
import csv
import json
import math
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perfutil  # noqa: E402  (bench/perfutil.py: the reader of train.step_times)

GRAD_EXTRA = 4  # floats after the gradients in the allreduced buffer (AE_GRAD_EXTRA)
MB = 1048576.0


def die(msg):
    sys.exit("scaling_model: " + msg)


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        die("%s: %s" % (path, e.strerror))


# ---- inputs ---------------------------------------------------------------------------------------

def read_layertime(path):
    layers, opt_s, batch = [], None, None
    for r in read_csv(path):
        try:
            i, b = int(r["layer"]), int(r["batch"])
            fwd, bwd, params = float(r["fwd_s_per_sample"]), float(r["bwd_s_per_sample"]), int(r["params"])
        except (KeyError, ValueError) as e:
            die("%s: bad row %s (%s)" % (path, r, e))
        batch = b
        if i >= 0:
            layers.append({"index": i, "name": r["name"], "params": params, "fwd": fwd, "bwd": bwd})
        elif r["name"] == "optimizer":
            opt_s = bwd * b  # per sample of the batch -> the step's optimizer time
    if not layers or opt_s is None:
        die("%s: needs layer rows and an optimizer row" % path)
    layers.sort(key=lambda l: l["index"])
    off = 0
    for l in layers:
        l["p_off"] = off
        off += l["params"]
    return {"layers": layers, "opt_s": opt_s, "batch": batch, "n_params": off, "at": []}


def add_batches(lt, paths):
    """More bench/layertime profiles of the same model at other batches: each layer's per-sample
    times then depend on the batch (sgemm is slower per sample on fewer rows), interpolated
    linearly in log(batch) between the measured batches and held constant beyond them."""
    prof = {lt["batch"]: {l["index"]: (l["fwd"], l["bwd"]) for l in lt["layers"]}}
    for path in paths:
        o = read_layertime(path)
        if [l["params"] for l in o["layers"]] != [l["params"] for l in lt["layers"]]:
            die("%s: not the layers of the main --layertime" % path)
        prof[o["batch"]] = {l["index"]: (l["fwd"], l["bwd"]) for l in o["layers"]}
    lt["at"] = sorted(prof.items())


def per_sample(lt, l, b):
    """(forward, backward) seconds per sample of layer l at b samples per rank."""
    at = lt["at"]
    if len(at) < 2:
        return l["fwd"], l["bwd"]
    if b <= at[0][0]:
        return at[0][1][l["index"]]
    if b >= at[-1][0]:
        return at[-1][1][l["index"]]
    for (b0, p0), (b1, p1) in zip(at, at[1:]):
        if b0 <= b <= b1:
            w = (math.log(b) - math.log(b0)) / (math.log(b1) - math.log(b0))
            f0, k0 = p0[l["index"]]
            f1, k1 = p1[l["index"]]
            return f0 + w * (f1 - f0), k0 + w * (k1 - k0)
    return l["fwd"], l["bwd"]


def fit_alpha_beta(points, nmin=0, nmax=float("inf"), alpha0=0.0):
    """points: (bytes, ranks, seconds). Least squares of the relative error of the ring formula
    t = 2(P-1) alpha + 2(P-1)/P n beta over the messages of nmin to nmax bytes. When the fit's
    alpha is negative (the large messages do not pin the latency down), alpha = alpha0 and beta
    is fitted alone. Returns alpha, beta, max and mean |relative error|, the sizes used."""
    s = [[0.0, 0.0], [0.0, 0.0]]
    rhs = [0.0, 0.0]
    used = [(n, p, t) for n, p, t in points if nmin <= n <= nmax and t > 0]
    if len(used) < 2:
        die("need at least 2 allreduce sizes to fit alpha and beta")
    for n, p, t in used:
        x = (2.0 * (p - 1), 2.0 * (p - 1) / p * n)
        w = 1.0 / (t * t)
        for i in range(2):
            rhs[i] += w * x[i] * t
            for j in range(2):
                s[i][j] += w * x[i] * x[j]
    det = s[0][0] * s[1][1] - s[0][1] * s[1][0]
    if det == 0:
        die("allreduce points do not determine alpha and beta (one size only?)")
    alpha = (rhs[0] * s[1][1] - s[0][1] * rhs[1]) / det
    beta = (s[0][0] * rhs[1] - s[1][0] * rhs[0]) / det
    if alpha < 0 or beta <= 0:  # a negative latency fits no network: refit beta alone
        alpha = alpha0
        num = sum(2.0 * (p - 1) / p * n * (t - 2.0 * (p - 1) * alpha) / (t * t) for n, p, t in used)
        den = sum((2.0 * (p - 1) / p * n) ** 2 / (t * t) for n, p, t in used)
        beta = num / den
    errs = [abs(ring(n, p, alpha, beta) - t) / t for n, p, t in used]
    return alpha, beta, max(errs), sum(errs) / len(errs), len(used)


def ring(n, p, alpha, beta):
    return 0.0 if p <= 1 else 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * n * beta


def recursive_doubling(n, p, alpha, beta):
    return 0.0 if p <= 1 else math.ceil(math.log2(p)) * (alpha + n * beta)


def allreduce_cost(n, p, alpha, beta):
    """(seconds, algorithm): the cheaper of ring and recursive doubling, as Open MPI's tuned
    component roughly picks (recursive doubling for small messages, ring for large)."""
    if p <= 1:
        return 0.0, "-"
    r, d = ring(n, p, alpha, beta), recursive_doubling(n, p, alpha, beta)
    return (r, "ring") if r <= d else (d, "recdbl")


# ---- the step model -----------------------------------------------------------------------------

def plan_buckets(lt, bucket_mb):
    """[(bytes, ready_layer)] in start order: whole layers from the last, each bucket closed at
    >= bucket_mb MB (src/train.c, plan_buckets; no tied layers)."""
    layers = lt["layers"]
    target = max(1, int(bucket_mb * MB / 4))
    out, hi = [], lt["n_params"]
    for l in reversed(layers):
        lo = l["p_off"]
        if hi > lo and (hi - lo >= target or l["index"] == layers[0]["index"]):
            out.append((4 * (hi - lo), l["index"]))
            hi = lo
    return out


def step_time(lt, p, b, alpha, beta, bucket_mb, overlap, opt_per_bucket=False, sharded=False):
    """dict: compute, comm (all allreduce work), exposed, step (seconds), algorithm.
    opt_per_bucket (aetrain's train.bucket_step, its default with buckets): the optimizer updates
    each bucket's parameters as soon as its sum is in, on the main thread after backward, while
    later buckets are summed; without it, one optimizer step after the last sum. sharded: the P
    ranks share one host and each steps 1/P of the parameters (train.shard_optimizer)."""
    layers = lt["layers"]
    fwd = b * sum(per_sample(lt, l, b)[0] for l in layers)
    bwd = {l["index"]: b * per_sample(lt, l, b)[1] for l in layers}
    t_back = sum(bwd.values())
    compute = fwd + t_back + lt["opt_s"] / (p if sharded and p > 1 else 1)
    total_bytes = 4 * (lt["n_params"] + GRAD_EXTRA)
    if p <= 1:
        return {"compute": compute, "comm": 0.0, "exposed": 0.0, "step": compute, "algorithm": "-"}
    if bucket_mb <= 0:
        c, alg = allreduce_cost(total_bytes, p, alpha, beta)
        if sharded:
            c, alg = ring(total_bytes, p, alpha, beta), "nodesum"
        return {"compute": compute, "comm": c, "exposed": c, "step": compute + c, "algorithm": alg}
    # the time at which the backward of each layer ends (backward runs from the last layer)
    done, t = {}, 0.0
    for l in reversed(layers):
        t += bwd[l["index"]]
        done[l["index"]] = t
    finish, comm, algs = 0.0, 0.0, set()
    main = t_back  # opt_per_bucket: when the main thread is free for the next bucket's update
    for nbytes, ready in plan_buckets(lt, bucket_mb):
        work, alg = allreduce_cost(nbytes, p, alpha, beta)
        algs.add(alg)
        comm += work
        start = max(done[ready], finish)
        if start < t_back and overlap > 0:
            cap = (t_back - start) * overlap
            finish = start + work / overlap if work <= cap else t_back + (work - cap)
        else:
            finish = max(start, t_back) + work
        main = max(main, finish) + lt["opt_s"] * nbytes / (4.0 * lt["n_params"])
    small, _ = allreduce_cost(4 * GRAD_EXTRA, p, alpha, beta)
    exposed = max(0.0, finish - t_back) + small
    if opt_per_bucket:  # the step ends with the last bucket's update, not all of the optimizer after the wait
        exposed = max(main, finish) + small - t_back - lt["opt_s"]
    return {"compute": compute, "comm": comm + small, "exposed": exposed, "step": compute + exposed,
            "algorithm": "+".join(sorted(algs))}


def node_step_time(lt, p, b, L, node_alpha, node_beta, node_gbs, alpha, beta):
    """aetrain's default on nodes of L ranks (P = N x L; P < L: one node of P): the node sum among
    the node's ranks, then the rails between nodes; each rank steps 1/L of the optimizer. node_alpha,
    node_beta: the nodesum fit (ring formula at 2 ranks: 2 alpha + S beta for S bytes)."""
    lr = min(p, L)
    n_nodes = (p + L - 1) // L
    base = step_time(lt, 1, b, 0, 0, 0, 0)
    compute = base["compute"] - lt["opt_s"] + lt["opt_s"] / lr
    S = 4.0 * (lt["n_params"] + GRAD_EXTRA)
    ns = 0.0
    if lr > 1:
        per_rank = node_beta * S * (1.0 + 1.0 / lr) / 1.5  # the fit's 2 ranks move 1.5 S bytes each
        node = (lr + 1) * S / (node_gbs * 1e9) if node_gbs > 0 else 0.0
        ns = max(per_rank, node) + 2 * node_alpha * math.ceil(math.log2(lr))
    rails, alg = 0.0, "nodesum"
    if n_nodes > 1:
        rails, a2 = allreduce_cost(S / lr, n_nodes, alpha, beta * lr)
        alg += "+" + a2
    comm = ns + rails
    return {"compute": compute, "comm": comm, "exposed": comm, "step": compute + comm, "algorithm": alg,
            "nodesum": ns, "rails": rails}


def step_deviations(run_dir):
    """The deviations of a train.step_times run: (w_q / step mean - 1) x sqrt(P0 / (P0 - 1))."""
    p0, work, _, _, common = perfutil.step_work(run_dir)
    if p0 < 2:
        die("--step-times %s: one rank: no deviations between ranks" % run_dir)
    k = math.sqrt(p0 / (p0 - 1.0))
    devs = []
    for i in range(len(common)):
        m = sum(work[q][i] for q in range(p0)) / p0
        devs.extend(k * (work[q][i] / m - 1.0) for q in range(p0))
    return p0, devs


def jitter_factor(devs, p, seed=1):
    """E[max of p independent draws of 1 + d] (Monte Carlo: 2000 steps, 500 from P = 128 on)."""
    if p <= 1:
        return 1.0
    rng = random.Random(seed)
    trials = 2000 if p < 128 else 500
    return sum(1.0 + max(rng.choice(devs) for _ in range(p)) for _ in range(trials)) / trials


def fit_overlap(lt, b, alpha, beta, bucket_mb, exposed_s):
    """The overlap in [0, 1] whose modelled exposed time is the measured one (bisection: the
    exposed time falls as the overlap grows)."""
    f = lambda o: step_time(lt, 2, b, alpha, beta, bucket_mb, o)["exposed"]
    if exposed_s >= f(0.0):
        return 0.0
    if exposed_s <= f(1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if f(mid) > exposed_s:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---- main -----------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layertime", required=True)
    ap.add_argument("--layertime-batches", default="",
                    help="comma-separated bench/layertime CSVs of the same model at other batches (per-sample "
                         "times by batch, interpolated in log(batch))")
    ap.add_argument("--allreduce", required=True)
    ap.add_argument("--measured", help="cluster/scaling-study scaling.csv")
    ap.add_argument("--overlap-csv", help="bucketed runs: setup,bucket_mb,...,allreduce_exposed_frac")
    ap.add_argument("--batch", type=int, help="samples per rank (default the batch bench/layertime ran at: the config's)")
    ap.add_argument("--bucket-mb", type=float, default=1.0, help="buckets of the overlapped projection (1)")
    ap.add_argument("--overlap", type=float, help="overlap of the 'measured' projection (default: fitted)")
    ap.add_argument("--links", default="25,100", help="link rates of the projection, Gb/s (25,100)")
    ap.add_argument("--latency-us", type=float, default=2.0)
    ap.add_argument("--link-efficiency", type=float, default=1.0,
                    help="share of the link rate an allreduce gets (1 = the wire rate)")
    ap.add_argument("--pmax", type=int, default=1024)
    ap.add_argument("--strong-batch", type=int, help="global batch of the strong projection (batch x 64)")
    ap.add_argument("--fit-min", type=float, default=2097152,
                    help="smallest message (bytes) in the fits (2 MB: the range of the messages a step sends, "
                         "the whole gradient buffer or buckets of 1.1-3.1 MB for hinton)")
    ap.add_argument("--fit-mode", default="auto",
                    help="allreduce rows to fit: allreduce (back to back), gap (with compute before each "
                         "call, allreduce_gap*), auto (gap where a setup has such rows)")
    ap.add_argument("--fit-max", type=float, default=float("inf"), help="largest message (bytes) in the fits")
    ap.add_argument("--ranks-per-node", type=int, default=1,
                    help="also project nodes of this many ranks (node sum, rails, sharded optimizer; 1: no)")
    ap.add_argument("--node-gbs", type=float, default=0.0,
                    help="memory bandwidth of such a node, GB/s, the node sum's limit (0: not limiting)")
    ap.add_argument("--step-times", help="a run folder with train.step_times (P >= 2): add +jitter variants")
    ap.add_argument("--target", default="64,25,0.9", help="P,Gb/s,efficiency of the stated target")
    ap.add_argument("--out", default=".")
    ap.add_argument("--png", help="draw the picture here (weak; the strong one next to it)")
    ap.add_argument("--aetrain", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "build", "aetrain"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    lt = read_layertime(a.layertime)
    add_batches(lt, [x for x in a.layertime_batches.split(",") if x])
    batch = a.batch or lt["batch"]  # bench/layertime ran at the resolved config's batch
    strong_batch = a.strong_batch or 64 * batch
    layers = lt["layers"]
    fwd_ps, bwd_ps = sum(l["fwd"] for l in layers), sum(l["bwd"] for l in layers)
    grad_bytes = 4 * lt["n_params"]
    print("compute (bench/layertime at batch %d, 1 thread): forward %.2f us/sample, backward %.2f us/sample, "
          "optimizer %.3f ms; %.3f ms per step at %d samples; %.2f MB of gradients"
          % (lt["batch"], 1e6 * fwd_ps, 1e6 * bwd_ps, 1e3 * lt["opt_s"],
             1e3 * step_time(lt, 1, batch, 0, 0, 0, 0)["step"], batch, grad_bytes / 1e6))

    # alpha, beta per setup
    pts, gap, iall, npts, ngap = {}, {}, {}, {}, {}
    for r in read_csv(a.allreduce):
        key = (r["label"], int(r["ranks"]))
        row = (float(r["bytes"]), int(r["ranks"]), float(r["seconds"]))
        if r["mode"] == "allreduce":
            pts.setdefault(key, []).append(row)
        elif r["mode"].startswith("allreduce_gap"):
            gap.setdefault(key, []).append(row)
        elif r["mode"].startswith("iallreduce_"):
            iall.setdefault(key, []).append((row, int(r["mode"].split("_")[1])))
        elif r["mode"] == "nodesum":
            npts.setdefault(key, []).append(row)
        elif r["mode"].startswith("nodesum_gap"):
            ngap.setdefault(key, []).append(row)
    if not pts:
        die("%s: no allreduce rows" % a.allreduce)
    # the setups whose ranks sum through node-shared memory: fitted to those rows, sharded optimizer
    sharded = set()
    for k in set(npts) | set(ngap):
        sharded.add(k[0])
        pts[k] = npts.get(k) or ngap[k]
        if ngap.get(k):
            gap[k] = ngap[k]
        else:
            gap.pop(k, None)
        iall.pop(k, None)
    small = {k: min(v)[2] / (2.0 * (k[1] - 1)) for k, v in pts.items()}  # latency of the smallest message
    back_to_back = dict(pts)
    if a.fit_mode in ("gap", "auto"):
        for k, v in gap.items():
            pts[k] = v
        if a.fit_mode == "gap" and set(pts) - set(gap):
            die("--fit-mode gap: no allreduce_gap rows for %s" % ", ".join(l for l, _ in set(pts) - set(gap)))
    fits = {}
    print("\nallreduce fits (ring formula, least squares of the relative error, messages of %g to %g bytes)"
          % (a.fit_min, a.fit_max))
    print("%-16s %5s %-10s %6s %10s %12s %14s %10s %9s %9s %10s %s" % (
        "setup", "ranks", "rows", "sizes", "4KB lat us", "alpha us", "beta ns/byte", "GB/s", "max err", "mean err",
        "b2b beta", "bucketed (1 MB) err"))
    frows = []
    for (label, p), v in sorted(pts.items()):
        al, be, emax, emean, nused = fit_alpha_beta(v, a.fit_min, a.fit_max, small[(label, p)])
        fits[label] = (al, be)
        _, be_b2b, _, _, _ = fit_alpha_beta(back_to_back[(label, p)], a.fit_min, a.fit_max, small[(label, p)])
        rows_used = "gap" if v is gap.get((label, p)) else "b2b"
        if label in sharded:
            rows_used = "node-" + rows_used
        berr = ""
        if (label, p) in iall:  # the buckets' allreduces, one after the other, by the same formula
            es = []
            for (n, pp, t), k in iall[(label, p)]:
                if not a.fit_min <= n <= a.fit_max:
                    continue
                full, rest = int(n // k), n - k * int(n // k)
                pred = full * ring(k, pp, al, be) + (ring(rest, pp, al, be) if rest else 0.0)
                es.append((pred - t) / t)
            berr = "%+.0f%% .. %+.0f%%" % (100 * min(es), 100 * max(es)) if es else ""
        print("%-16s %5d %-10s %6d %10.2f %12.2f %14.4f %10.3f %8.1f%% %8.1f%% %10.4f %s" % (
            label, p, rows_used, nused, 1e6 * small[(label, p)], 1e6 * al, 1e9 * be, 1e-9 / be, 100 * emax,
            100 * emean, 1e9 * be_b2b, berr))
        frows.append({"setup": label, "ranks": p, "rows": rows_used, "latency_4kb_s": "%.6g" % small[(label, p)],
                      "alpha_s": "%.6g" % al, "beta_s_per_byte": "%.6g" % be,
                      "beta_back_to_back_s_per_byte": "%.6g" % be_b2b,
                      "gbytes_per_s": "%.4g" % (1e-9 / be), "max_rel_err": "%.4f" % emax,
                      "mean_rel_err": "%.4f" % emean, "sizes": nused})
    write_csv(os.path.join(a.out, "fits.csv"), frows)

    # the overlap, from a bucketed run on the communication thread
    overlap, ov_rows = a.overlap, []
    if a.overlap_csv:
        ov_rows = read_csv(a.overlap_csv)
        if overlap is None and ov_rows:
            r = ov_rows[0]
            if r["setup"] not in fits:
                die("%s: setup %s has no allreduce fit" % (a.overlap_csv, r["setup"]))
            b = int(r["global_batch"]) // 2
            step = int(r["global_batch"]) / float(r["samples_per_s"])
            exposed = float(r["allreduce_exposed_frac"]) * step
            overlap = fit_overlap(lt, b, *fits[r["setup"]], float(r["bucket_mb"]), exposed)
            print("\noverlap %.3f: fitted to %s, bucket_mb = %s on the communication thread, exposed allreduce "
                  "%.1f ms of a %.1f ms step" % (overlap, r["setup"], r["bucket_mb"], 1e3 * exposed, 1e3 * step))
    if overlap is None:
        overlap = 0.0
        print("\noverlap 0 (no --overlap and no --overlap-csv)")

    # validation against every measured point
    val = []
    if a.measured:
        for r in read_csv(a.measured):
            setup, p = r["setup"], int(r["ranks"])
            if p > 1 and setup not in fits:
                print("(no allreduce fit for setup %s: its points are skipped)" % setup)
                continue
            al, be = fits.get(setup, (0.0, 0.0))
            b = float(r["batch_per_rank"])
            m = step_time(lt, p, b, al, be, 0, 0, sharded=setup in sharded)
            val.append({"setup": setup, "mode": r["mode"], "ranks": p, "bucket_mb": 0, "batch_per_rank": b,
                        "measured_ms": float(r["step_ms"]), "model_ms": 1e3 * m["step"],
                        "measured_eff": float(r["efficiency"]), "model_exposed_ms": 1e3 * m["exposed"],
                        "measured_allreduce_ms": float(r["allreduce_share"]) * float(r["step_ms"])})
        # efficiency of the model: against the model's own P = 1 of the same setup and mode
        for v in val:
            one = [w for w in val if w["setup"] == v["setup"] and w["mode"] == v["mode"] and w["ranks"] == 1]
            if one:
                t1 = one[0]["model_ms"]
                v["model_eff"] = t1 / v["model_ms"] if v["mode"] == "weak" else t1 / (v["ranks"] * v["model_ms"])
    for r in ov_rows:
        al, be = fits[r["setup"]]
        b = int(r["global_batch"]) / 2
        m = step_time(lt, 2, b, al, be, float(r["bucket_mb"]), overlap)
        step = int(r["global_batch"]) / float(r["samples_per_s"])
        val.append({"setup": r["setup"], "mode": "weak", "ranks": 2, "bucket_mb": float(r["bucket_mb"]),
                    "batch_per_rank": b, "measured_ms": 1e3 * step, "model_ms": 1e3 * m["step"],
                    "measured_eff": float("nan"), "model_eff": float("nan"), "model_exposed_ms": 1e3 * m["exposed"],
                    "measured_allreduce_ms": 1e3 * step * float(r["allreduce_exposed_frac"])})
    worst = 0.0
    if val:
        print("\nvalidation: model vs measured step time (bucket_mb 0 = one allreduce after backward; "
              "allreduce = measured share x step, model = exposed)")
        print("%-16s %-6s %3s %6s %6s %11s %9s %7s %10s %10s %8s %8s" % (
            "setup", "mode", "P", "b/rank", "bucket", "measured ms", "model ms", "error", "meas. ar", "model ar",
            "meas eff", "model eff"))
        for v in val:
            v["rel_err"] = (v["model_ms"] - v["measured_ms"]) / v["measured_ms"]
            worst = max(worst, abs(v["rel_err"]))
            print("%-16s %-6s %3d %6g %6g %11.2f %9.2f %+6.1f%% %10.2f %10.2f %8.3f %8.3f" % (
                v["setup"], v["mode"], v["ranks"], v["batch_per_rank"], v["bucket_mb"], v["measured_ms"],
                v["model_ms"], 100 * v["rel_err"], v["measured_allreduce_ms"], v["model_exposed_ms"],
                v["measured_eff"], v.get("model_eff", float("nan"))))
        print("largest |error|: %.1f%% over %d points" % (100 * worst, len(val)))
        write_csv(os.path.join(a.out, "validation.csv"), [
            {k: ("%.6g" % x if isinstance(x, float) else x) for k, x in v.items()} for v in val])

    # projections
    links = [float(x) for x in a.links.split(",") if x]
    alpha = a.latency_us * 1e-6
    ps = [1]
    while ps[-1] * 2 <= a.pmax:
        ps.append(ps[-1] * 2)
    # one allreduce after backward; buckets at the fitted overlap; buckets fully overlapped; and the
    # same with the optimizer per bucket (train.bucket_step, aetrain's default with buckets)
    variants = [("none", 0.0, 0.0, False), ("ovl%.2f" % overlap, a.bucket_mb, overlap, False),
                ("full", a.bucket_mb, 1.0, False), ("full+opt", a.bucket_mb, 1.0, True)]
    proj = []

    def project(setup, g, step_of, extra):
        """weak and strong rows of one setup: step_of(p, b, beta) -> a step_time dict; extra(m) -> its
        bucket_mb, overlap and any more columns"""
        beta = 8.0 / (g * 1e9) / a.link_efficiency
        for mode in ("weak", "strong"):
            t1 = None
            for p in ps:
                b = batch if mode == "weak" else strong_batch / p
                if b < 1:
                    continue
                m = step_of(p, b, beta)
                t1 = m["step"] if p == 1 else t1
                eff = t1 / m["step"] if mode == "weak" else t1 / (p * m["step"])
                ex = extra(m)
                row = {"setup": setup, "mode": mode, "ranks": p, "link_gbps": g, "bucket_mb": ex.pop("bucket_mb"),
                       "overlap": ex.pop("overlap"), "batch_per_rank": "%.6g" % b,
                       "global_batch": "%.6g" % (b * p), "step_ms": "%.5g" % (1e3 * m["step"]),
                       "compute_ms": "%.5g" % (1e3 * m["compute"]), "allreduce_ms": "%.5g" % (1e3 * m["comm"]),
                       "exposed_ms": "%.5g" % (1e3 * m["exposed"]), "algorithm": m["algorithm"],
                       "samples_per_s": "%.6g" % (b * p / m["step"]), "efficiency": "%.4f" % eff}
                row.update(ex)  # after the common columns, as before
                proj.append(row)

    models = {}  # variant -> (step_of, extra) of its projection, which its +jitter variant stretches
    for g in links:
        for vname, bmb, o, ob in variants:
            models[vname] = (lambda p, b, beta, bmb=bmb, o=o, ob=ob: step_time(lt, p, b, alpha, beta, bmb, o, ob),
                             lambda m, bmb=bmb, o=o: {"bucket_mb": bmb, "overlap": "%.3f" % o})
            project("%gG-%s" % (g, vname), g, *models[vname])
    L = a.ranks_per_node
    if L > 1:
        node_fit = [k for k in fits if k in sharded]
        if not node_fit:
            die("--ranks-per-node %d: %s has no nodesum rows (bench/allreduce.c -N) to fit the node sum to"
                % (L, a.allreduce))
        nal, nbe = fits[node_fit[0]]
        vname = "node%d" % L
        variants.append((vname, 0.0, 0.0, False))
        models[vname] = (lambda p, b, beta: node_step_time(lt, p, b, L, nal, nbe, a.node_gbs, alpha, beta),
                         lambda m: {"bucket_mb": 0, "overlap": "0.000", "ranks_per_node": L,
                                    "nodesum_ms": "%.5g" % (1e3 * m["nodesum"]),
                                    "rails_ms": "%.5g" % (1e3 * m["rails"])})
        for g in links:
            project("%gG-%s" % (g, vname), g, *models[vname])
        print("\nnodes of %d ranks (%s): the node sum fitted to %s (alpha %.2f us, %.3f GB/s at 2 ranks), "
              "node memory %s; the rails share the link" % (
                  L, vname, node_fit[0], 1e6 * nal, 1e-9 / nbe,
                  "%g GB/s" % a.node_gbs if a.node_gbs > 0 else "not limiting (--node-gbs 0)"))
    if a.step_times:
        p0, devs = step_deviations(a.step_times)
        jf = {p: jitter_factor(devs, p) for p in ps}
        print("\njitter (%s, %d ranks, %d deviations, sd %.3f): a step's compute x %s" % (
            a.step_times, p0, len(devs), math.sqrt(sum(d * d for d in devs) / len(devs)),
            ", ".join("%.3f at P = %d" % (jf[p], p) for p in ps if p in (2, 64, 1024))))

        def jittered(step_of):
            def f(p, b, beta):
                m = dict(step_of(p, b, beta))
                m["compute"] *= jf[p]
                m["step"] = m["compute"] + m["exposed"]
                return m
            return f
        for vname, bmb, o, ob in list(variants):
            if not (vname.startswith("ovl") or vname.startswith("node")):
                continue
            variants.append((vname + "+jitter", bmb, o, ob))
            step_of, extra = models[vname]
            for g in links:
                project("%gG-%s+jitter" % (g, vname), g, jittered(step_of), extra)
    write_csv(os.path.join(a.out, "projections.csv"), proj)
    show = [2, 8, 64, 256, 1024]
    print("\nprojection: %s Gb/s links at %g us (beta = 8 / rate / %g), weak batch %d per rank, strong global "
          "batch %d; bucketed variants at bucket_mb = %g" % (a.links, a.latency_us, a.link_efficiency, batch,
                                                             strong_batch, a.bucket_mb))
    print("%-22s %-6s " % ("setup", "mode") + " ".join("%14s" % ("P=%d" % p) for p in show))
    for g in links:
        for vname, _, _, _ in variants:
            setup = "%gG-%s" % (g, vname)
            for mode in ("weak", "strong"):
                cells = []
                for p in show:
                    r = [x for x in proj if x["setup"] == setup and x["mode"] == mode and x["ranks"] == p]
                    cells.append("%6.3f %7s" % (float(r[0]["efficiency"]), r[0]["step_ms"] + "ms") if r else "-")
                print("%-22s %-6s " % (setup, mode) + " ".join("%14s" % c for c in cells))

    tp, tg, te = a.target.split(",")
    tp, tg, te = int(tp), float(tg), float(te)
    target = {}
    for vname, _, _, _ in variants:
        r = [x for x in proj if x["setup"] == "%gG-%s" % (tg, vname) and x["mode"] == "weak" and x["ranks"] == tp]
        if r:
            target[vname] = float(r[0]["efficiency"])
    print("\ntarget: weak efficiency >= %g at P = %d on %g Gb/s: " % (te, tp, tg) + ", ".join(
        "%s %.3f (%s)" % (k, v, "met" if v >= te else "not met") for k, v in target.items()))

    summary = {"batch": batch, "strong_batch": strong_batch, "grad_bytes": grad_bytes,
               "compute_s": step_time(lt, 1, batch, 0, 0, 0, 0)["step"], "overlap": overlap,
               "fits": {k: {"alpha_s": v[0], "beta_s_per_byte": v[1]} for k, v in fits.items()},
               "validation_max_rel_err": worst, "validation_points": len(val), "target": target,
               "weak_eff": {r["setup"] + "@" + str(r["ranks"]): float(r["efficiency"]) for r in proj
                            if r["mode"] == "weak"}}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)

    if a.png:
        for mode, png in (("weak", a.png), ("strong", re.sub(r"(\.png)?$", "_strong.png", a.png, count=1))):
            rows = plot_rows(val, proj, mode, links, variants)
            path = os.path.join(a.out, "plot_%s.csv" % mode)
            write_csv(path, rows)
            title = "%s scaling: model (lines, open circles) vs measured (dots)" % mode
            cmd = [a.aetrain, "plot", "--scaling", path, "--out", png, "--log", "--title", title]
            res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
            if res.returncode:
                die("%s failed: %s" % (" ".join(cmd), res.stderr.strip()))
            print("wrote %s" % png)
    print("wrote %s/{fits,validation,projections}.csv and summary.json" % a.out)


def plot_rows(val, proj, mode, links, variants):
    """The picture's CSV: measured points (bucket_mb 0), the model at them, the projections."""
    rows = []
    for v in val:
        if v["mode"] != mode or v["bucket_mb"] or not (v["measured_eff"] >= 0):
            continue
        b = v["batch_per_rank"]
        rows.append({"setup": v["setup"], "mode": mode, "ranks": v["ranks"], "style": "measured",
                     "samples_per_s": "%.6g" % (1e3 * b * v["ranks"] / v["measured_ms"]),
                     "efficiency": "%.4f" % v["measured_eff"]})
    for v in list(rows):
        m = [w for w in val if w["setup"] == v["setup"] and w["mode"] == mode and w["ranks"] == v["ranks"]
             and not w["bucket_mb"]][0]
        rows.append({"setup": v["setup"] + " (model)", "mode": mode, "ranks": v["ranks"], "style": "model",
                     "samples_per_s": "%.6g" % (1e3 * m["batch_per_rank"] * v["ranks"] / m["model_ms"]),
                     "efficiency": "%.4f" % m.get("model_eff", 1.0)})
    for g in links:
        for vname, _, o, _ in variants:
            if vname.startswith("ovl") and o == 0:  # nearly the line of "none"
                continue
            for r in proj:
                if r["setup"] == "%gG-%s" % (g, vname) and r["mode"] == mode:
                    rows.append({"setup": r["setup"], "mode": mode, "ranks": r["ranks"], "style": "projected",
                                 "samples_per_s": r["samples_per_s"], "efficiency": r["efficiency"]})
    return rows


def write_csv(path, rows):
    if not rows:
        return
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})


if __name__ == "__main__":
    main()
