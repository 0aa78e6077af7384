"""`evalkit demo`: the whole benchmark, end to end, on the built-in dataset.

Trains RABIT, UNITE, CoCosNet and SPADE (preset ``tiny``) on the built-in ``shapes``
scenes, evaluates every metric on their test outputs (and on two reference outputs: the
ground truth, the best any method can do, and a copy of the exemplar), profiles the
memory of the alignment modules, and writes the report into ``OUT/``::

    OUT/report.md           start here: leaderboard, warnings, timings, where everything is
    OUT/summary.json        the same as `evalkit demo --json`
    OUT/run/                the benchmark run (see docs/pipeline.md): checkpoints, outputs,
                            results.csv, report/ (leaderboard, paper tables, plots)
    OUT/history.sqlite      the run recorded for `evalkit report compare`
    OUT/profile/            memory profile table and plot

Metric backbones are the pretrained ones when their files are present, otherwise
random-initialised (``--weights random``), which the report states in its first line.
A second `evalkit demo` into the same folder resumes / skips every finished stage.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from evalkit.config import DatasetConfig, EvaluationConfig, ReportConfig, RunConfig, VariantConfig

METHODS = ("rabit", "unite", "cocosnet", "spade")
REFERENCES = ("reference/ground-truth", "reference/exemplar-copy")
SIZE = 64
N_TRAIN = 64
N_TEST = 32  # 16 queries x 2 exemplars each (LPIPS diversity needs several exemplars per query)
STEPS = 60
BATCH = 4
PAPER_DATASET = "ADE20K"  # the paper table the demo's numbers are set beside (marked: built-in data)


def metric_weights() -> str:
    """``pretrained`` when every metric backbone file is present, else ``random``."""
    from evalkit import weights

    needed = ("inception-cleanfid", "vgg19", "alexnet")
    present = {row["key"]: row["present"] for row in weights.status()}
    return "pretrained" if all(present.get(k) for k in needed) else "random"


def demo_config(out: Path, weights: str) -> RunConfig:
    from methods.registry import list_variants

    known = set(list_variants())
    methods = [m for m in METHODS if m in known]
    return RunConfig(
        name="run",
        out=Path(out),
        seeds=(0,),
        datasets=(DatasetConfig(name="shapes", size=SIZE, n_train=N_TRAIN, n_test=N_TEST,
                                options={"exemplars_per_query": 2}),),
        variants=tuple(VariantConfig(name=m, preset="tiny", steps=STEPS, batch_size=BATCH) for m in methods)
        + tuple(VariantConfig(name=r) for r in REFERENCES),
        evaluation=EvaluationConfig(metrics=None, weights=weights),
        report=ReportConfig(paper_datasets={"shapes": PAPER_DATASET}, examples=4),
    )


def _profile(report_dir: Path, out: Path) -> dict[str, Path]:
    """Memory profile of the alignment modules (evalkit.profile) → table + plot."""
    import evalkit.profile

    if not hasattr(evalkit.profile, "memory_profile"):  # TRANSITIONAL: evalkit.profile is being built
        return {}
    from evalkit.profile import memory_profile
    from reports import plots
    from reports.results import write_atomic

    table = memory_profile(sizes=(16, 32), progress=False)
    prof_dir = out / "profile"
    csv = write_atomic(prof_dir / "memory.csv", table.to_csv(index=False, float_format="%.6g"))
    png, pdf = plots.profile_lines(table, prof_dir / "memory", x="size", y="peak_MiB", hue="module",
                                   xlabel="grid side (query positions = side²)", ylabel="peak memory (MiB)")
    return {"profile.csv": csv, "profile.png": png, "profile.pdf": pdf}


def run_demo(out: str | Path = "evalkit-demo", *, progress: bool = True) -> dict:
    """Run the demo into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from evalkit import pipeline
    from reports import leaderboard
    from reports.results import write_atomic

    out = Path(out)
    t0, c0 = time.perf_counter(), time.process_time()
    weights = metric_weights()
    cfg = demo_config(out, weights)
    extra: dict[str, Path] = {}
    summary = pipeline.run(cfg, progress=progress,
                           extra_report=lambda table, report_dir: extra.update(_profile(report_dir, out)) or extra)
    results = pd.read_csv(summary.results)
    lb = leaderboard.build(results)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    data = {
        "out": str(out),
        "run_id": summary.run_id,
        "weights": weights,
        "warning": None if weights == "pretrained" else (
            "metric backbones are random-initialised (pretrained files not found): the numbers rank outputs "
            "consistently within this report but are not comparable with published numbers"),
        "variants": [v.name for v in cfg.variants],
        "missing_methods": [m for m in METHODS if m not in {v.name for v in cfg.variants}],
        "dataset": {"name": "shapes", "size": SIZE, "n_train": N_TRAIN, "n_test": N_TEST},
        "steps": STEPS,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None,
        "stages_computed": len(summary.computed),
        "stages_skipped": len(summary.skipped),
        "leaderboard": {f"{r.variant} {r.metric}": round(float(r["mean"]), 6) for _, r in lb.cells.iterrows()},
        "files": {k: str(v) for k, v in summary.report.items()} | {"results.csv": str(summary.results)},
    }
    write_atomic(out / "summary.json", json.dumps(data, indent=1))
    write_atomic(out / "report.md", _report_md(data, lb))
    data["files"]["report.md"] = str(out / "report.md")
    return data


def _report_md(data: dict, lb) -> str:
    from reports import leaderboard

    lines = ["# evalkit demo", ""]
    if data["warning"]:
        lines += [f"**Warning:** {data['warning']}.", ""]
    lines += [f"Run `{data['run_id']}`: {', '.join(data['variants'])} on the built-in `shapes` dataset "
              f"({data['dataset']['size']} px, {data['dataset']['n_train']} training / {data['dataset']['n_test']} test "
              f"samples), {data['steps']} training steps each (preset `tiny`).", ""]
    if data["missing_methods"]:
        lines += [f"Not available in this checkout: {', '.join(data['missing_methods'])}.", ""]
    lines += ["## Leaderboard", "", leaderboard.to_markdown(lb), "## Files", ""]
    lines += [f"- `{k}`: {v}" for k, v in sorted(data["files"].items())]
    lines += ["", f"Wall time {data['wall_seconds']} s, CPU time {data['cpu_seconds']} s "
              f"({data['stages_computed']} stages computed, {data['stages_skipped']} skipped).", ""]
    return "\n".join(lines)


def format_summary(data: dict) -> str:
    head = f"evalkit demo: {data['out']}/report.md ({data['wall_seconds']} s wall, {data['cpu_seconds']} s CPU)"
    return head + (f"\nwarning: {data['warning']}" if data["warning"] else "")
