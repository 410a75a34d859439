#!/usr/bin/env python3
"""lossc against PyTorch eager, torch.compile and jax.jit(value_and_grad) on identical inputs.

For each benchmark loss this script draws the inputs once (numpy, seed 0, the distributions of
the team's ../shared/bench/peers.py), writes them to target/bench-inputs/NAME.npz, times
`lossc bench --inputs` (release build, forward + gradient of every float input), then times each
peer framework on the same arrays in a fresh subprocess (so torch.compile's and JAX's first call
is a cold compile), and prints one Markdown table with the ratios peer / lossc (> 1: lossc is
faster). Raw records go to target/bench-inputs/results.json.

    cargo build --release --locked
    python3 benches/peers.py                      # every loss, every framework
    python3 benches/peers.py --losses dpo,ms --frameworks torch --reps 5

Needs numpy and torch (pytorch-metric-learning for ms); jax is optional (skipped if absent).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "bench-inputs")
LOSSC = os.path.join(ROOT, "target", "release", "lossc")

# name -> (lossc source, --set, sizes)
BENCHES = {
    "dpo": ("dpo", "", {"n": 4194304}),
    "ce": ("cross_entropy", "", {"rows": 8192, "vocab": 32000}),
    "ce_z": (os.path.join(ROOT, "benches", "ce_z.loss"), "", {"rows": 8192, "vocab": 32000}),
    "ms": ("multi_similarity", "", {"n": 1024, "dim": 256, "classes": 64}),
    "infonce": (os.path.join(ROOT, "benches", "infonce.loss"), "", {"n": 2048, "dim": 256}),
}
DPO_BETA, Z_COEF, TAU = 0.1, 1e-4, 0.1
MS = dict(alpha=2.0, beta=50.0, base=0.5)


def inputs(name, s):
    """The arrays every framework gets, keyed by lossc's input names."""
    import numpy as np
    rng = np.random.default_rng(0)
    f32 = np.float32
    if name == "dpo":
        keys = ["policy_chosen_logps", "policy_rejected_logps",
                "reference_chosen_logps", "reference_rejected_logps"]
        return {k: (rng.standard_normal(s["n"], dtype=f32) * 10.0 - 100.0).astype(f32) for k in keys}
    if name in ("ce", "ce_z"):
        logits = rng.standard_normal((s["rows"], s["vocab"]), dtype=f32)
        target = rng.integers(0, s["vocab"], size=s["rows"], dtype=np.int64)
        return {"logits": logits, "target": target}
    if name == "ms":
        e = rng.standard_normal((s["n"], s["dim"]), dtype=f32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        labels = rng.integers(0, s["classes"], size=s["n"], dtype=np.int64)
        return {"embeddings": e.astype(f32), "labels": labels}
    if name == "infonce":
        z1 = rng.standard_normal((s["n"], s["dim"]), dtype=f32)
        z2 = (z1 + 0.5 * rng.standard_normal((s["n"], s["dim"]), dtype=f32)).astype(f32)
        n = s["n"]
        positive = np.concatenate([np.arange(n, 2 * n), np.arange(0, n)]).astype(np.int64)
        return {"embeddings": np.concatenate([z1, z2]), "positive": positive}
    raise ValueError(name)


def torch_fn(name):
    import torch
    import torch.nn.functional as F
    if name == "dpo":
        def f(a):
            z = DPO_BETA * ((a["policy_chosen_logps"] - a["reference_chosen_logps"])
                            - (a["policy_rejected_logps"] - a["reference_rejected_logps"]))
            return -F.logsigmoid(z).mean()
        return f
    if name == "ce":
        return lambda a: F.cross_entropy(a["logits"], a["target"])
    if name == "ce_z":
        def f(a):
            lse = torch.logsumexp(a["logits"], dim=-1)
            return F.cross_entropy(a["logits"], a["target"]) + Z_COEF * (lse * lse).mean()
        return f
    if name == "ms":
        from pytorch_metric_learning import losses
        ms = losses.MultiSimilarityLoss(**MS)
        return lambda a: ms(a["embeddings"], a["labels"])
    if name == "infonce":
        def f(a):
            e = a["embeddings"]
            n2 = e.shape[0]
            z = F.normalize(e, dim=1)
            sim = (z @ z.t()) / TAU
            sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
            targets = torch.cat([torch.arange(n2 // 2, n2), torch.arange(0, n2 // 2)])
            return F.cross_entropy(sim, targets)
        return f
    raise ValueError(name)


def jax_fn(name):
    import jax
    import jax.numpy as jnp
    if name == "dpo":
        def f(x, labels):
            pc, pr, rc, rr = x
            return -jnp.mean(jax.nn.log_sigmoid(DPO_BETA * ((pc - rc) - (pr - rr))))
    elif name in ("ce", "ce_z"):
        def f(x, labels):
            lse = jax.scipy.special.logsumexp(x, axis=-1)
            picked = jnp.take_along_axis(x, labels[:, None], axis=-1)[:, 0]
            loss = jnp.mean(lse - picked)
            return loss + Z_COEF * jnp.mean(lse * lse) if name == "ce_z" else loss
    elif name == "ms":
        def f(x, labels):
            e = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            s = e @ e.T
            same = labels[:, None] == labels[None, :]
            eye = jnp.eye(s.shape[0], dtype=bool)
            pos, neg = same & ~eye, ~same
            a, b, base = MS["alpha"], MS["beta"], MS["base"]
            lp = jax.scipy.special.logsumexp(jnp.where(pos, -a * (s - base), -jnp.inf), axis=1)
            ln = jax.scipy.special.logsumexp(jnp.where(neg, b * (s - base), -jnp.inf), axis=1)
            return jnp.mean(jax.nn.softplus(lp) / a + jax.nn.softplus(ln) / b)
    elif name == "infonce":
        def f(x, labels):
            n2 = x.shape[0]
            z = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            sim = jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, (z @ z.T) / TAU)
            targets = jnp.concatenate([jnp.arange(n2 // 2, n2), jnp.arange(0, n2 // 2)])
            lse = jax.scipy.special.logsumexp(sim, axis=1)
            return jnp.mean(lse - sim[jnp.arange(n2), targets])
    return jax.jit(jax.value_and_grad(f))


def peer(name, framework, reps, threads):
    """Runs in a subprocess: one framework on one loss; prints one JSON record."""
    import numpy as np
    arrays = dict(np.load(os.path.join(OUT, name + ".npz")))
    floats = [k for k, v in arrays.items() if v.dtype == np.float32]
    if framework == "jax":
        import jax.numpy as jnp
        fn = jax_fn(name)
        x = [jnp.asarray(arrays[k]) for k in floats]
        x = x if name == "dpo" else x[0]
        labels = jnp.asarray(next((v for v in arrays.values() if v.dtype == np.int64), np.zeros(1, np.int64)))

        def step():
            v, g = fn(x, labels)
            g = g if isinstance(g, (list, tuple)) else [g]
            for t in g:
                t.block_until_ready()
            return float(v)
    else:
        import torch
        torch.set_num_threads(threads)
        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
        for k in floats:
            t[k].requires_grad_(True)
        fn = torch_fn(name)
        if framework == "torch_compile":
            fn = torch.compile(fn)

        def step():
            v = fn(t)
            torch.autograd.grad(v, [t[k] for k in floats])
            return float(v)
    t0 = time.perf_counter()
    value = step()
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(2):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps(dict(first_call_ms=first, median_ms=times[len(times) // 2],
                          min_ms=times[0], value=value)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--losses", default=",".join(BENCHES))
    ap.add_argument("--frameworks", default="torch,torch_compile,jax")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        return peer(args.peer[0], args.peer[1], args.reps, args.threads)
    import numpy as np
    os.makedirs(OUT, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               XLA_FLAGS=f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}")
    records, rows = [], []
    for name in args.losses.split(","):
        source, sets, sizes = BENCHES[name]
        path = os.path.join(OUT, name + ".npz")
        np.savez(path, **inputs(name, sizes))
        cmd = [LOSSC, "bench", source, "--inputs", path, "--threads", str(args.threads),
               "--reps", str(args.reps), "--json"] + (["--set", sets] if sets else [])
        t0 = time.perf_counter()
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        ours["first_call_ms"] = (time.perf_counter() - t0) * 1e3
        records.append(dict(ours, bench=name, framework="lossc"))
        row = [name, json.dumps(sizes)[1:-1].replace('"', ""), f"{ours['median_ms']:.1f}",
               f"{ours['compile_ms']:.1f}", f"{ours['value']:.6g}"]
        for fw in args.frameworks.split(","):
            # A fresh inductor cache, so torch.compile's first call is a cold compile.
            cold = dict(env, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(prefix="inductor-"))
            r = subprocess.run([sys.executable, __file__, "--peer", name, fw, "--reps", str(args.reps),
                                "--threads", str(args.threads)], capture_output=True, text=True, env=cold)
            if r.returncode != 0:
                row.append("n/a")
                print(f"{name}/{fw} failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            rec = json.loads(r.stdout.strip().splitlines()[-1])
            records.append(dict(rec, bench=name, framework=fw))
            row.append(f"{rec['median_ms']:.1f} ({rec['median_ms'] / ours['median_ms']:.2f}x, "
                       f"first {rec['first_call_ms'] / 1e3:.2f} s, {rec['value']:.6g})")
        rows.append(row)
        print(" | ".join(row), file=sys.stderr, flush=True)
    head = ["loss", "sizes", "lossc ms", "lossc compile ms", "lossc value"] + [
        f"{fw} ms (ratio, first call, value)" for fw in args.frameworks.split(",")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
