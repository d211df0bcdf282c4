#!/usr/bin/python3
"""PyTorch training-step throughput of aetrain's benchmark models, for bench/run.sh.

Run with Debian's /usr/bin/python3 and python3-torch 1.13, which links the
same OpenBLAS as aetrain (dense layers go through it; convolutions go
through oneDNN). Same architecture, loss, optimizer and batch as the aetrain
config; random data shaped like MNIST (uniform bytes / 255, 1x28x28);
warm-up steps, then timed steps (zero_grad, forward, loss, backward, Adam).

Settings (each one in a fresh process whose OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS match its threads, so OpenBLAS' own pthreads obey too):
  t1     one process, torch.set_num_threads(1), batch B
  t2     one process, torch.set_num_threads(2), batch B
  ddp2   DistributedDataParallel, gloo, 2 processes x 1 thread, B/2 per process (global batch B)
  ddp2w  the same with B per process (global 2B): weak scaling
Prints one CSV row per setting, then a row whose setting is best=NAME (the fastest of t1, t2,
ddp2, which share the config's global batch):
  model,setting,procs,threads,batch_per_proc,global_batch,steps,seconds,samples_per_s,coretype
(coretype: openblas_get_corename() of the OpenBLAS this process runs) and, on stderr, which
OPENBLAS_CORETYPE was set and why.

--bind core (bench/run.sh's default) pins each process of one thread to a core of its own (DDP
rank r to the r-th core this process may use) and a 2-thread one to two, as run.sh binds aetrain.

  /usr/bin/python3 bench/torch_step.py --model simple32 [--settings t1,t2,ddp2,ddp2w]
        [--seconds 8] [--warmup 1] [--coretype NAME] [--bind core|none] [--header]
"""
import argparse
import os
import subprocess
import sys
import time

MODELS = {
    # name: (batch, description)
    "simple32": (256, "784-32-784 relu / sigmoid, BCE, Adam 1e-3"),
    "stacked": (150, "784-300-150-300-784 elu (He init), linear out, MSE + L2 1e-4, Adam 0.01"),
    "hinton": (100, "784-1000-500-250-30-250-500-1000-784 sigmoid, BCE, Adam 1e-3"),
    "conv": (128, "Keras conv AE (configs/mnist_conv.ini), BCE, Adam 1e-3"),
    "deepconv": (128, "32-64-128 conv AE (configs/mnist_deepconv.ini), BCE, Adam 1e-3"),
}
SETTINGS = {"t1": (1, 1, False), "t2": (1, 2, False), "ddp2": (2, 1, False), "ddp2w": (2, 1, True)}

# ---- the OpenBLAS core type aetrain would use (src/cpu.c) --------------------------------------

TIERS = {3: ("skylakex", "cooperlake", "sapphirerapids"), 2: ("haswell", "zen", "skylake"),
         1: ("sandybridge", "bulldozer", "piledriver", "steamroller", "excavator")}


def tier(name):
    for t, names in TIERS.items():
        if name.lower() in names:
            return t
    return 0


def library_core():
    import ctypes
    lib = ctypes.CDLL("libopenblas.so.0")
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def aetrain_coretype():
    """What aetrain runs with: the user's OPENBLAS_CORETYPE, else the library's choice unless the
    CPU supports a stronger tier (then SkylakeX / Haswell / Sandybridge, as src/cpu.c does)."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return os.environ["OPENBLAS_CORETYPE"], "OPENBLAS_CORETYPE was already set"
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    if {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= flags:
        best = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        best = "Haswell"
    elif "avx" in flags:
        best = "Sandybridge"
    else:
        best = None
    cur = library_core()
    if best and tier(cur) < tier(best):
        return best, "OpenBLAS picked %s; aetrain re-execs with %s on this CPU" % (cur, best)
    return cur, "OpenBLAS' own choice, which aetrain keeps on this CPU"


# ---- the models --------------------------------------------------------------------------------

def build(name):
    import torch
    import torch.nn as nn

    def dense_chain(sizes, act):  # act between layers; the last one gives logits (or is linear)
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(act())
        return nn.Sequential(*layers)

    if name == "simple32":
        model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 784))
        return model, nn.BCEWithLogitsLoss(), torch.optim.Adam(model.parameters(), lr=1e-3), True
    if name == "stacked":
        model = dense_chain([784, 300, 150, 300, 784], nn.ELU)
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # aetrain's l2 = 1e-4 adds 1e-4 * W to the gradient of the weights only (l2/2 sum W^2)
        weights = [m.weight for m in model if isinstance(m, nn.Linear)]
        biases = [m.bias for m in model if isinstance(m, nn.Linear)]
        opt = torch.optim.Adam([{"params": weights, "weight_decay": 1e-4}, {"params": biases}], lr=0.01)
        return model, nn.MSELoss(), opt, True
    if name == "hinton":
        model = dense_chain([784, 1000, 500, 250, 30, 250, 500, 1000, 784], nn.Sigmoid)
        return model, nn.BCEWithLogitsLoss(), torch.optim.Adam(model.parameters(), lr=1e-3), True
    if name == "conv":
        relu = nn.ReLU
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), relu(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(16, 8, 3, padding=1), relu(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(8, 8, 3, padding=1), relu(), nn.MaxPool2d(2, ceil_mode=True),  # code 8x4x4
            nn.Conv2d(8, 8, 3, padding=1), relu(), nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 8, 3, padding=1), relu(), nn.Upsample(scale_factor=2),
            nn.Conv2d(8, 16, 3), relu(), nn.Upsample(scale_factor=2),  # valid: 16 -> 14 -> 28
            nn.Conv2d(16, 1, 3, padding=1))
        return model, nn.BCEWithLogitsLoss(), torch.optim.Adam(model.parameters(), lr=1e-3), False
    if name == "deepconv":
        relu = nn.ReLU
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), relu(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), relu(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), relu(),  # code 128x7x7
            nn.Conv2d(128, 64, 3, padding=1), relu(), nn.Upsample(scale_factor=2),
            nn.Conv2d(64, 32, 3, padding=1), relu(), nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 1, 3, padding=1))
        return model, nn.BCEWithLogitsLoss(), torch.optim.Adam(model.parameters(), lr=1e-3), False
    raise SystemExit("torch_step.py: unknown model %s (%s)" % (name, ", ".join(MODELS)))


def run_steps(name, batch, seconds, warmup_s, threads, rank=0, world=1):
    """Train on random MNIST-shaped data; returns (steps, seconds) of the timed part."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(rank)
    model, loss_fn, opt, flat = build(name)
    if world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(model)
    pool = 8192
    data = torch.randint(0, 256, (pool, 1, 28, 28), dtype=torch.uint8).float().div_(255)
    if flat:
        data = data.view(pool, 784)
    perm = torch.randperm(pool)
    pos = [0]

    def step():
        if pos[0] + batch > pool:
            pos[0] = 0
        x = data[perm[pos[0]:pos[0] + batch]]  # a gather, as aetrain gathers its batch
        pos[0] += batch
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), x)
        loss.backward()
        opt.step()

    def barrier():
        if world > 1:
            dist.barrier()

    # warm-up: at least 3 steps and warmup_s seconds (rank 0's clock decides, so that every rank
    # runs the same steps: each DDP backward is a collective); its pace sets the timed step count
    barrier()
    t0, n = time.perf_counter(), 0
    go = torch.ones(1)
    while go.item():
        step()
        n += 1
        if n == 2:  # the pace is taken from the steps after the first two
            t1 = time.perf_counter()
        go[0] = 1.0 if (n < 3 or time.perf_counter() - t0 < warmup_s) else 0.0
        if world > 1:
            dist.broadcast(go, 0)
    per = (time.perf_counter() - t1) / (n - 2)
    steps = torch.tensor([max(5, int(seconds / per))])
    if world > 1:
        dist.broadcast(steps, 0)  # every rank must run the same number of steps
    steps = int(steps.item())
    barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    barrier()
    return steps, time.perf_counter() - t0


def pin(first, count, bind):
    """With bind == "core": this process on `count` cores from the `first`-th one it may use."""
    if bind == "core":
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[(first + i) % len(cpus)] for i in range(count)})


def ddp_worker(rank, world, name, batch, seconds, warmup_s, port, out, bind):
    pin(rank, 1, bind)
    import torch.distributed as dist
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    steps, sec = run_steps(name, batch, seconds, warmup_s, 1, rank, world)
    if rank == 0:
        out.put((steps, sec))
    dist.destroy_process_group()


def worker(args):
    """One setting in this process (the environment is already right)."""
    procs, threads, weak = SETTINGS[args.worker]
    B = args.batch or MODELS[args.model][0]
    per_proc = B if (weak or procs == 1) else B // procs
    glob = per_proc * procs
    if procs == 1:
        pin(0, threads, args.bind)
        steps, sec = run_steps(args.model, per_proc, args.seconds, args.warmup, threads)
    else:
        import socket
        import torch.multiprocessing as mp
        with socket.socket() as s:  # a free port
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        out = ctx.SimpleQueue()
        mp.spawn(ddp_worker, nprocs=procs, join=True,
                 args=(procs, args.model, per_proc, args.seconds, args.warmup, port, out, args.bind))
        steps, sec = out.get()
    print("%s,%s,%d,%d,%d,%d,%d,%.3f,%.6g,%s" % (args.model, args.worker, procs, threads, per_proc, glob, steps,
                                                sec, glob * steps / sec, library_core()),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--settings", default="t1,t2,ddp2,ddp2w")
    ap.add_argument("--batch", type=int, default=0, help="global batch (default: the config's)")
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per setting")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per setting")
    ap.add_argument("--coretype", default="", help="OPENBLAS_CORETYPE (default: what aetrain would use)")
    ap.add_argument("--bind", default="none", choices=["core", "none"],
                    help="core: every process on cores of its own (default: the OS places them)")
    ap.add_argument("--header", action="store_true", help="print the CSV header first")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.coretype:
        core, why = args.coretype, "given with --coretype"
    else:
        core, why = aetrain_coretype()
    print("torch_step.py: OPENBLAS_CORETYPE=%s (%s)" % (core, why), file=sys.stderr)
    if args.header:
        print("model,setting,procs,threads,batch_per_proc,global_batch,steps,seconds,samples_per_s,coretype",
              flush=True)
    best = None
    for s in args.settings.split(","):
        if s not in SETTINGS:
            raise SystemExit("torch_step.py: unknown setting %s (%s)" % (s, ", ".join(SETTINGS)))
        threads = SETTINGS[s][1]
        env = dict(os.environ, OPENBLAS_CORETYPE=core, OPENBLAS_NUM_THREADS=str(threads),
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        cmd = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--worker", s,
               "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--batch", str(args.batch),
               "--bind", args.bind]
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, universal_newlines=True)
        sys.stdout.write(r.stdout)
        sys.stdout.flush()
        if r.returncode:
            print("torch_step.py: setting %s of %s failed (exit %d)" % (s, args.model, r.returncode),
                  file=sys.stderr)
            return r.returncode
        row = r.stdout.strip().splitlines()[-1].split(",")
        if not SETTINGS[s][2] and (best is None or float(row[8]) > float(best[8])):
            best = row
    if best:  # the best setting at the config's global batch (weak scaling excluded)
        print(",".join([best[0], "best=" + best[1]] + best[2:]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
