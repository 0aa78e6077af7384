"""`evalkit demo`: the whole benchmark, end to end, on the built-in dataset.

Trains RABIT, UNITE, CoCosNet and SPADE (preset ``tiny``) on the built-in ``shapes``
scenes, evaluates every metric on their test outputs (and on two reference outputs: the
ground truth, the best any method can do, and a copy of the exemplar), profiles the
memory of the alignment modules, and writes the report into ``OUT/``::

    OUT/report.md           start here: leaderboard, warnings, timings, where everything is
    OUT/summary.json        the same as `evalkit demo --json`
    OUT/run/                the benchmark run (see README.md): checkpoints, outputs,
                            results.csv, report/ (leaderboard, paper tables, plots,
                            profile.{csv,png,pdf}: memory/time of the alignment modules)
    OUT/history.sqlite      the run (results + memory/time profile) for `evalkit report compare`

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

from evalkit.config import DatasetConfig, ReportConfig, RunConfig, VariantConfig
from evalkit.metrics.options import EvaluationOptions
from evalkit.errors import EvalkitError
from evalkit.files import write_atomic
from evalkit.reports import results as R

METHODS = ("rabit", "unite", "cocosnet", "spade")
REFERENCES = ("reference/ground-truth", "reference/exemplar-copy")
SIZE = 64  # preset `tiny` output size
N_TRAIN = 64
EXEMPLARS_PER_QUERY = 3  # the papers' LPIPS-diversity protocol: outputs under 3 exemplars per input
N_TEST = 48  # 16 queries x 3 exemplars
STEPS = 120
BATCH = 4
PAPER_DATASET = "ADE20K"  # the paper table the demo's numbers are set beside (marked: built-in data)


def metric_weights() -> str:
    """``pretrained`` when every metric backbone file is present, else ``random``."""
    from evalkit import weights

    needed = ("inception-cleanfid", "vgg19", "alexnet")
    present = {row["key"]: row["present"] for row in weights.status()}
    return "pretrained" if all(present.get(k) for k in needed) else "random"


def demo_config(out: Path, weights: str) -> RunConfig:
    from evalkit.devices import resolve_device

    return RunConfig(
        name="run",
        out=Path(out),
        seeds=(0,),
        device=str(resolve_device("auto")),
        datasets=(DatasetConfig(name="shapes", size=SIZE, n_train=N_TRAIN, n_test=N_TEST,
                                options={"exemplars_per_query": EXEMPLARS_PER_QUERY}),),
        variants=tuple(VariantConfig(name=m, preset="tiny", steps=STEPS, batch_size=BATCH) for m in METHODS)
        + tuple(VariantConfig(name=r) for r in REFERENCES),
        evaluation=EvaluationOptions(metrics=None, weights=weights),
        report=ReportConfig(paper_datasets={"shapes": PAPER_DATASET}, examples=4),
    )


PROFILE_SIZES = (16, 32)  # correspondence grid sides (L = 256, 1024 query positions)


def profile_rows(run_id: str) -> pd.DataFrame:
    """Memory profile of the alignment modules (:mod:`evalkit.profile.memory`, one fresh
    subprocess per case) as rows of the long table: method ``alignment``, variant = module,
    metrics ``peak-memory-MiB@L`` and ``time-s@L`` (machine-bound: history compares them only
    on the same machine fingerprint)."""
    from evalkit.profile.memory import ProfileConfig, profile_memory
    from evalkit.protocol import Protocol

    rows = []
    for r in profile_memory(ProfileConfig(sizes=PROFILE_SIZES, device="cpu"), progress=False):
        if r.status != "ok":
            continue
        proto = Protocol(resolution=r.size, resize="none", image_format="none", backbone=f"profile-{r.method}",
                         weights_sha256="none", n_images=0).as_columns()
        base = {"run_id": run_id, "method": "alignment", "variant": r.module, "dataset": "profile", "split": "test",
                "n": 1, "seed": 0, **proto}
        rows.append({**base, "metric": f"peak-memory-MiB@{r.L}", "value": r.peak_bytes / 2**20})
        rows.append({**base, "metric": f"time-s@{r.L}", "value": r.seconds})
    return pd.DataFrame(rows, columns=R.COLUMNS)


def _profile_report(run_id: str, report_dir: Path) -> tuple[dict[str, Path], pd.DataFrame]:
    from evalkit.reports import plots

    table = profile_rows(run_id)
    mem = table[table["metric"].str.startswith("peak-memory")].copy()
    mem["L"] = mem["metric"].str.split("@").str[1].astype(int)
    csv = write_atomic(report_dir / "profile.csv", table.to_csv(index=False, float_format="%.6g"))
    png, pdf = plots.profile_lines(mem, report_dir / "profile", x="L", y="value", hue="variant",
                                   xlabel="correspondence size L = H x W", ylabel="peak memory (MiB)")
    return {"profile.csv": csv, "profile.png": png, "profile.pdf": pdf}, table


def run_demo(out: str | Path = "evalkit-demo", *, progress: bool = True) -> dict:
    """Run the demo into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from evalkit import pipeline
    from evalkit.reports import leaderboard

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EvalkitError(f"--out {out}: is a file; pass a folder for the demo (created when missing)", path=out)
    t0, c0 = time.perf_counter(), time.process_time()
    weights = metric_weights()
    cfg = demo_config(out, weights)
    profile: dict = {}

    def extra_report(table, report_dir):
        files, rows = _profile_report(table["run_id"].iloc[0], report_dir)
        profile["rows"] = rows
        return files

    summary = pipeline.run(cfg, progress=progress, extra_report=extra_report)
    if "rows" in profile:  # the report stage ran: record the profile beside the results
        from evalkit.reports import history

        info = json.loads((summary.run_dir / "run.json").read_text(encoding="utf-8"))
        history.record(cfg.history_path, history.RunInfo(**info),
                       pd.concat([R.read(summary.results), profile["rows"]], ignore_index=True))
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
    from evalkit.reports import leaderboard

    lines = ["# evalkit demo", ""]
    if data["warning"]:
        lines += [f"**Warning:** {data['warning']}.", ""]
    lines += [f"Run `{data['run_id']}`: {', '.join(data['variants'])} on the built-in `shapes` dataset "
              f"({data['dataset']['size']} px, {data['dataset']['n_train']} training / {data['dataset']['n_test']} test "
              f"samples), {data['steps']} training steps each (preset `tiny`).", ""]
    lines += ["## Leaderboard", "", leaderboard.to_markdown(lb), "## Files", ""]
    lines += [f"- `{k}`: {v}" for k, v in sorted(data["files"].items())]
    lines += ["", f"Wall time {data['wall_seconds']} s, CPU time {data['cpu_seconds']} s "
              f"({data['stages_computed']} stages computed, {data['stages_skipped']} skipped).", ""]
    return "\n".join(lines)


def format_summary(data: dict) -> str:
    head = f"evalkit demo: {data['out']}/report.md ({data['wall_seconds']} s wall, {data['cpu_seconds']} s CPU)"
    return head + (f"\nwarning: {data['warning']}" if data["warning"] else "")
