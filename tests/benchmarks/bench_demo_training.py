"""The demo's training budget, variant by variant (opt-in benchmark, issue 11):

    .venv/bin/python -m pytest tests/benchmarks/bench_demo_training.py -s

``test_demo_budget_training``: each variant the demo trains (``evalkit.demo.METHODS``) at
preset ``tiny`` for the demo's steps (``evalkit.demo.steps_for``), batch and training set,
then translated on the demo's test set; prints LPIPS-gt, PSNR, style-mean/std of its outputs and of its warped exemplars
(up-sampled) beside ``reference/exemplar-copy``, and the training CPU seconds per step.
``test_step_time``: CPU seconds per training step of every demo variant (one thread; set
``EVALKIT_BENCH_BEFORE=<checkout>`` to measure an older evalkit checkout side by side in a
subprocess with the same script). ``test_paper_step_256``: one step of the ``paper`` preset at 256 px on the CPU with its peak
RSS (issue 15 item 5). ``test_uot_convergence``: the default UnbalancedTransport
schedule at the tiny (16x16) grid against a float64 solve run to a residual of 1e-6, and its
residual / iterations at the paper's 64x64 grid. Metrics use random-init backbones unless the
pretrained files are installed. Set ``OMP_NUM_THREADS=1`` for per-step figures that compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from evalkit import demo
from evalkit.data import collate, get_dataset, to_uint8_image
from evalkit.methods.registry import build_translator

STEP_SCRIPT = r"""
import json, sys, time, warnings
import torch
warnings.simplefilter("ignore")
torch.set_num_threads(1)
from evalkit.data import collate, get_dataset
from evalkit.methods.registry import build_translator
ds = get_dataset("shapes", split="train", size=64, n=8, seed=0)
batch = collate([ds[i] for i in range(4)])
out = {}
for v in sys.argv[1].split(","):
    t = build_translator(v, cond_channels=ds.cond_channels, preset="tiny")
    t.train_step(batch)
    c0 = time.process_time()
    for _ in range(5):
        t.train_step(batch)
    out[v] = (time.process_time() - c0) / 5
print(json.dumps(out))
"""


def _step_times(pythonpath: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r = subprocess.run([sys.executable, "-c", STEP_SCRIPT, ",".join(demo.METHODS)], env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_step_time():
    now = _step_times()
    before = _step_times(os.environ["EVALKIT_BENCH_BEFORE"]) if os.environ.get("EVALKIT_BENCH_BEFORE") else {}
    print("\n| variant | CPU s/step" + (" before | after |" if before else " |"))
    for v, s in now.items():
        print(f"| {v} | " + (f"{before.get(v, float('nan')):.3f} | " if before else "") + f"{s:.3f} |")


PAPER_STEP_SCRIPT = r"""
import json, resource, sys, time, warnings
import torch
warnings.simplefilter("ignore")
from evalkit.data import collate, get_dataset
from evalkit.methods.registry import build_translator
ds = get_dataset("shapes", split="train", size=256, n=2, seed=0)
batch = collate([ds[0]])
t = build_translator(sys.argv[1], cond_channels=ds.cond_channels, preset="paper", size=256)
t0 = time.perf_counter(); t.train_step(batch); first = time.perf_counter() - t0
t0 = time.perf_counter(); t.train_step(batch); second = time.perf_counter() - t0
print(json.dumps({"first_s": first, "step_s": second,
                  "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def test_paper_step_256():
    """One training step (batch 1, the second, warm) of the ``paper`` preset at 256 px on the CPU,
    each variant in a fresh process: wall seconds and the process's peak RSS."""
    print("\n| variant (paper, 256 px, batch 1) | first step s | step s | peak RSS GiB |")
    for v in ("rabit", "unite", "cocosnet"):
        r = subprocess.run([sys.executable, "-c", PAPER_STEP_SCRIPT, v], capture_output=True, text=True, check=True)
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {v} | {m['first_s']:.1f} | {m['step_s']:.1f} | {m['peak_rss_GiB']:.2f} |")


def _u8(images: torch.Tensor) -> np.ndarray:
    return np.stack([to_uint8_image(i) for i in images]).transpose(0, 3, 1, 2)


def test_demo_budget_training(tmp_path):
    from evalkit.metrics import evaluate_arrays
    from evalkit.methods.training import train

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    train_ds = get_dataset("shapes", split="train", size=demo.SIZE, n=demo.N_TRAIN, seed=0)
    test_ds = get_dataset("shapes", split="test", size=demo.SIZE, n=demo.N_TEST, seed=0,
                          exemplars_per_query=demo.EXEMPLARS_PER_QUERY)
    samples = [test_ds[i] for i in range(len(test_ds))]
    real, exemplar = _u8(torch.stack([s.image for s in samples])), _u8(torch.stack([s.exemplar for s in samples]))
    metrics = ["lpips", "vgg", "psnr"]

    def score(images):
        df = evaluate_arrays(images, real, exemplars_uint8=exemplar, metrics=metrics, weights="random", progress=False)
        return {r.metric: float(r.value) for r in df.itertuples()}

    rows = [("reference/exemplar-copy", score(exemplar), None)]
    for variant in demo.METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = build_translator(variant, cond_channels=train_ds.cond_channels, preset="tiny")
            c0 = time.process_time()
            steps = demo.steps_for(variant)
            train(t, train_ds, steps=steps, out_dir=tmp_path / variant.replace("/", "__"),
                  batch_size=demo.BATCH, progress=False)
            per_step = (time.process_time() - c0) / steps
            outs, warps = [], []
            for s in range(0, len(samples), 8):
                o = t.translate(collate(samples[s:s + 8]))
                outs.append(o.image.clamp(-1, 1))
                if o.warped is not None:
                    warps.append(torch.nn.functional.interpolate(o.warped.clamp(-1, 1), size=demo.SIZE,
                                                                 mode="bilinear", align_corners=False))
        rows.append((variant, score(_u8(torch.cat(outs))), per_step))
        if warps:
            rows.append((f"{variant} (warped exemplar)", score(_u8(torch.cat(warps))), None))
    names = ["LPIPS-gt", "PSNR", "style-mean", "style-std"]
    print(f"\nsteps {', '.join(f'{v} {demo.steps_for(v)}' for v in demo.METHODS)}, batch {demo.BATCH}, "
          f"{demo.N_TRAIN} training scenes, {demo.N_TEST} test samples, preset tiny")
    print("| output | " + " | ".join(names) + " | CPU s/step |")
    for name, vals, per_step in rows:
        print(f"| {name} | " + " | ".join(f"{vals.get(m, float('nan')):.4f}" for m in names)
              + f" | {'' if per_step is None else f'{per_step:.3f}'} |")


def test_uot_convergence():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "alignment"))
    from test_transport import _shapes_features

    from evalkit.methods.alignment import UnbalancedTransport, cosine_cost, unite_masses
    from evalkit.methods.alignment.transport import _eps_schedule, _sinkhorn_dense

    for side, reference in ((16, True), (64, False)):
        q, k = _shapes_features(side, 32 if side == 16 else 128, 2)
        c0 = time.process_time()
        corr = UnbalancedTransport(eps=1e-4, tau=1.0, masses="eq3")(q, k)
        line = f"{side}x{side}: {corr.stats}, {time.process_time() - c0:.2f} s CPU"
        if reference:
            x, z = q.flatten(2).double(), k.flatten(2).double()
            a, b = unite_masses(x, z, "eq3")
            c, init, stats = cosine_cost(x, z), None, {}
            for e in _eps_schedule(1e-4, 12, 2.0):
                ref, f, g = _sinkhorn_dense(a, b, c, e, 1.0, 100000, 0.0, init, marginal_tol=1e-6, stats=stats)
                init = (f, g)
            agree = (corr.matrix().argmax(-1) == ref.argmax(-1)).double().mean().item()
            line += f", arg-max agreement with the float64 solve (residual {stats['residual']:.1e}): {agree:.4f}"
        print("\n" + line)
