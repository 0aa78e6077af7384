"""`evalkit demo`: the whole benchmark, end to end, on the built-in dataset.

Trains RABIT, UNITE, CoCosNet and the papers' SPADE (``spade-vae``: style injected from the
exemplar) at preset ``tiny`` on the built-in ``shapes`` scenes (the labels-only ``spade`` is left
out to keep the demo within 10 minutes on two CPU cores; ``evalkit run`` trains it), evaluates
every metric on their test outputs (and on two reference outputs: the ground truth, the best
any method can do, and a copy of the exemplar, the floor every exemplar-based method has to
beat), runs the paired bootstrap of
each exemplar-based method against the exemplar copy on LPIPS-gt and PSNR, profiles the
memory of the alignment modules, and writes the report into ``OUT/``::

    OUT/report.md           start here: warnings, leaderboard, claims vs exemplar copy, example
                            grid, training-loss curves, timings, where everything is
    OUT/summary.json        the same as `evalkit demo --json`
    OUT/run/                the benchmark run (see README.md): checkpoints (with losses.json),
                            outputs, results.csv, report/ (leaderboard, paper tables, plots,
                            claims*.{md,csv}, examples.png, losses.{png,pdf},
                            profile.{csv,png,pdf}: memory/time of the alignment modules)
    OUT/history.sqlite      the run (results + memory/time profile) for `evalkit report compare`

Metric backbones are the pretrained ones when their files are present, otherwise
random-initialised (``--weights random``), which the report states in its first line. The
``tiny`` preset's perceptual network is always a narrow random VGG19, so its contextual loss
(matching the exemplar's feature statistics) has no meaning and is off
(:data:`evalkit.methods.config.TINY`); the report says so.
A second `evalkit demo` into the same folder resumes / skips every finished stage.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.config import DatasetConfig, ReportConfig, RunConfig, VariantConfig
from evalkit.metrics.options import EvaluationOptions
from evalkit.errors import EvalkitError
from evalkit.files import write_atomic
from evalkit.reports import results as R

METHODS = ("rabit", "unite", "cocosnet", "spade-vae")
EXEMPLAR_BASED = ("rabit", "unite", "cocosnet", "spade-vae")  # each must beat the exemplar copy
COPY = "reference/exemplar-copy"
REFERENCES = ("reference/ground-truth", COPY)
CLAIM_METRICS = ("LPIPS-gt", "PSNR")
SIZE = 64  # preset `tiny` output size
N_TRAIN = 256
EXEMPLARS_PER_QUERY = 3  # the papers' LPIPS-diversity protocol: outputs under 3 exemplars per input
N_TEST = 48  # 16 queries x 3 exemplars
STEPS = 300
# spade-vae has no correspondence to copy colours through, only its style code, and the cheapest
# step (0.25 s vs 0.4-0.7 s at one thread): it trains 900 steps (docs/methods.md, Presets: at
# 300 it is still below the exemplar copy on LPIPS-gt). The four trainings run side by side
# (train_workers): 8:21-8:51 wall on two cores, trainings 120-260 s each.
STEP_FACTOR = {"spade-vae": 3.0}


def steps_for(method: str) -> int:
    """Training steps of ``method`` in the demo."""
    return max(1, round(STEPS * STEP_FACTOR.get(method, 1)))

BATCH = 4
EXAMPLES = 4  # rows of the example grid
PAPER_DATASET = "ADE20K"  # the paper table the demo's numbers are set beside (marked: built-in data)


def metric_weights() -> str:
    """``pretrained`` when every metric backbone file is present, else ``random``."""
    from evalkit import weights

    needed = ("inception-cleanfid", "vgg19", "alexnet")
    present = {row["key"]: row["present"] for row in weights.status()}
    return "pretrained" if all(present.get(k) for k in needed) else "random"


def demo_config(out: Path, weights: str) -> RunConfig:
    from evalkit.devices import resolve_device

    device = str(resolve_device("auto"))
    return RunConfig(
        name="run",
        out=Path(out),
        seeds=(0,),
        device=device,
        train_workers=train_workers(device),
        datasets=(DatasetConfig(name="shapes", size=SIZE, n_train=N_TRAIN, n_test=N_TEST,
                                options={"exemplars_per_query": EXEMPLARS_PER_QUERY}),),
        variants=tuple(VariantConfig(name=m, preset="tiny", steps=steps_for(m), batch_size=BATCH) for m in METHODS)
        + tuple(VariantConfig(name=r) for r in REFERENCES),
        evaluation=EvaluationOptions(metrics=None, weights=weights),
        report=ReportConfig(paper_datasets={"shapes": PAPER_DATASET}, examples=EXAMPLES),
    )


def train_workers(device: str) -> int:
    """Trainings side by side: on a CPU one process per method up to one per core (a ``tiny``
    translator gains little from a second thread), else 1."""
    from evalkit.devices import cpu_cores

    cores = cpu_cores()
    return max(1, min(len(METHODS), cores)) if device == "cpu" else 1


PROFILE_SIZES = (16, 32)  # correspondence grid sides (L = 256, 1024 query positions)


def profile_rows(run_id: str) -> pd.DataFrame:
    """Memory profile of the alignment modules (:mod:`evalkit.profile.memory`, one fresh
    process per case) as rows of the long table: method ``alignment``, variant = module,
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


def claims_vs_copy(cfg: RunConfig, report_dir: Path) -> pd.DataFrame:
    """Paired bootstrap (:func:`evalkit.reports.bootstrap.paired_bootstrap`, 1000 resamples of the
    test items, seed 0) of every exemplar-based method A against B = the exemplar copy on
    LPIPS-gt and PSNR: ``A beats B`` only when the 95 % interval of Δ = A − B excludes 0 on
    A's side. Written to ``report/claims_vs_exemplar_copy.{md,csv}``."""
    from evalkit.devices import resolve_device
    from evalkit.reports import bootstrap as B
    from evalkit.reports.claims import _PerItem

    run_dir, seed, dataset = cfg.run_dir, cfg.seeds[0], cfg.datasets[0].name
    ev = cfg.evaluation
    options = ev.replace(cache_dir=ev.cache_dir or run_dir / "features",
                         device=str(resolve_device(cfg.device)) if ev.device == "auto" else ev.device)
    per = _PerItem(run_dir / "outputs", seed, options, options.cache_dir)
    rows = []
    for metric in CLAIM_METRICS:
        hib = R.higher_is_better(metric)
        copy = np.asarray(per(dataset, COPY, metric).values, dtype=float)
        for method in EXEMPLAR_BASED:
            mine = np.asarray(per(dataset, method, metric).values, dtype=float)
            res = B.paired_bootstrap(mine, copy, higher_is_better=hib, n_boot=1000, seed=seed)
            rows.append(B.claim_row(dataset, seed, metric, method, COPY, res))
    claims = pd.DataFrame(rows, columns=B.CLAIM_COLUMNS)
    write_atomic(report_dir / "claims_vs_exemplar_copy.csv", claims.to_csv(index=False))  # full precision
    write_atomic(report_dir / "claims_vs_exemplar_copy.md", _claims_md(claims))
    return claims


def _claims_md(claims: pd.DataFrame) -> str:
    lines = ["| method | metric | method | exemplar copy | Δ | 95% interval | P(better) | verdict |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in claims.to_dict("records"):
        lines.append(f"| {r['a']} | {r['metric']} {R.arrow(r['metric'])} | {r['stat_a']:.4g} | {r['stat_b']:.4g} | "
                     f"{r['delta']:+.4g} | [{r['ci_low']:.4g}, {r['ci_high']:.4g}] | {r['p_better']:.3f} | {r['verdict']} |")
    lines += ["", f"Paired bootstrap over the {int(claims['n_items'].iloc[0])} test items (1000 resamples): each "
              "exemplar-based method against copying the exemplar, the floor a method that uses the exemplar "
              "has to beat. \"beats\" only when the whole 95% interval of Δ lies on the method's side of 0."]
    return "\n".join(lines) + "\n"


def example_grid(cfg: RunConfig, report_dir: Path, rows: int = EXAMPLES) -> Path:
    """``report/examples.png``: one row per test sample (the first exemplar of the first ``rows``
    queries), columns input (visualised condition) | exemplar | ground truth | each method."""
    from evalkit.files import load_image, save_png
    from evalkit.layout import OutputsLayout, read_pairs_csv

    layout = OutputsLayout(cfg.run_dir / "outputs" / cfg.datasets[0].name / f"seed{cfg.seeds[0]}")
    first: dict[str, str] = {}
    for r in read_pairs_csv(layout.pairs):
        first.setdefault(r["query"], r["name"])
    names = list(first.values())[:rows]
    columns = [layout.cond, layout.exemplar, layout.real] + [layout.images(m) for m in METHODS]
    pad = 2
    tiles = []
    for name in names:
        row = []
        for folder in columns:
            path = next(p for p in OutputsLayout.image_files(folder) if p.stem == name)
            img = load_image(path)
            row += [img, np.full((img.shape[0], pad, 3), 255, np.uint8)]
        tiles.append(np.concatenate(row[:-1], 1))
        tiles.append(np.full((pad, tiles[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(tiles[:-1], 0)
    scale = 2 if grid.shape[0] <= 70 * len(names) else 1  # tiles of 64 px or less are shown at 2x (nearest)
    grid = grid.repeat(scale, 0).repeat(scale, 1)
    return save_png(grid, report_dir / "examples.png")


def loss_plot(cfg: RunConfig, report_dir: Path) -> list[Path]:
    """``report/losses.{png,pdf}``: each trained method's training losses (its ``losses.json``)."""
    from evalkit.layout import variant_dir
    from evalkit.reports import plots

    d, seed = cfg.datasets[0].name, cfg.seeds[0]
    histories = {}
    for m in METHODS:
        path = cfg.run_dir / "checkpoints" / d / variant_dir(m) / f"seed{seed}" / "losses.json"
        if path.is_file():
            histories[m] = json.loads(path.read_text(encoding="utf-8"))
    return plots.training_losses(histories, report_dir / "losses") if histories else []


def run_demo(out: str | Path = "evalkit-demo", *, progress: bool = True) -> dict:
    """Run the demo into ``out``; returns the summary (also written to ``out/summary.json``)."""
    from evalkit import pipeline
    from evalkit.reports import leaderboard

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EvalkitError(f"--out {out}: is a file; pass a folder for the demo (created when missing)", path=out)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    weights = metric_weights()
    cfg = demo_config(out, weights)
    profile: dict = {}

    def extra_report(table, report_dir):
        files, rows = _profile_report(table["run_id"].iloc[0], report_dir)
        profile["rows"] = rows
        claims_vs_copy(cfg, report_dir)
        files["claims_vs_exemplar_copy.md"] = report_dir / "claims_vs_exemplar_copy.md"
        files["claims_vs_exemplar_copy.csv"] = report_dir / "claims_vs_exemplar_copy.csv"
        for ext in ("md", "csv"):  # written by the run's report (evalkit.reports.claims_papers)
            files[f"claims_vs_papers.{ext}"] = report_dir / f"claims_vs_papers.{ext}"
        files["examples.png"] = example_grid(cfg, report_dir)
        for p in loss_plot(cfg, report_dir):
            files[p.name] = p
        return files

    summary = pipeline.run(cfg, progress=progress, extra_report=extra_report)
    if "rows" in profile:  # the report stage ran: record the profile beside the results
        from evalkit.reports import history

        info = json.loads((summary.run_dir / "run.json").read_text(encoding="utf-8"))
        history.record(cfg.history_path, history.RunInfo(**info),
                       pd.concat([R.read(summary.results), profile["rows"]], ignore_index=True))
    results = pd.read_csv(summary.results)
    lb = leaderboard.build(results)
    claims_csv = summary.run_dir / "report" / "claims_vs_exemplar_copy.csv"
    claims = pd.read_csv(claims_csv) if claims_csv.is_file() else pd.DataFrame()
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    data = {
        "out": str(out),
        "run_id": summary.run_id,
        "weights": weights,
        "warning": None if weights == "pretrained" else (
            "metric backbones are random-initialised (pretrained files not found): the numbers rank outputs "
            "consistently within this report but are not comparable with published numbers"),
        "variants": [v.name for v in cfg.variants],
        "dataset": {"name": "shapes", "size": SIZE, "n_train": N_TRAIN, "n_test": N_TEST},
        "steps": {m: steps_for(m) for m in METHODS},
        "losses_off": _losses_off(),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None,
        "train_workers": cfg.train_workers,
        "stages_computed": len(summary.computed),
        "stages_skipped": len(summary.skipped),
        "leaderboard": {f"{r.variant} {r.metric}": round(float(r["mean"]), 6) for _, r in lb.cells.iterrows()},
        "claims_vs_exemplar_copy": [{k: r[k] for k in ("a", "metric", "delta", "ci_low", "ci_high", "verdict")}
                                    for r in claims.to_dict("records")],
        "files": {k: str(v) for k, v in summary.report.items()} | {"results.csv": str(summary.results)},
    }
    write_atomic(out / "summary.json", json.dumps(data, indent=1))
    write_atomic(out / "report.md", _report_md(data, lb, summary.run_dir / "report"))
    data["files"]["report.md"] = str(out / "report.md")
    return data


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (training processes, profile cases)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _losses_off() -> str:
    """What the ``tiny`` preset changes in the losses, and why (for the report)."""
    from evalkit.methods.config import TINY, TINY_FAMILY

    off = sorted(k for k, v in TINY.get("losses", {}).items() if v == 0)
    parts = [f"{', '.join(off)} off: the tiny preset's perceptual network is a narrow random VGG19 (never "
             "pretrained), on which matching the exemplar's feature statistics has no meaning"] if off else []
    if TINY_FAMILY.get("unite", {}).get("losses", {}).get("l1"):
        parts.append("rabit, unite, cocosnet: a pixel L1 to the ground truth on self-reference pairs stands beside "
                     "the pseudo-pair VGG loss (random VGG)")
    if "spade" in TINY_FAMILY:
        parts.append("spade-vae: a pixel L1 to the ground truth replaces the VGG loss (random VGG), and its style "
                     "code is deterministic (no VAE sampling or KL) from an encoder without instance norm, so "
                     "that a few hundred steps learn the exemplar's colours (docs/methods.md, Presets)")
    return "; ".join(parts)


def _report_md(data: dict, lb, report_dir: Path) -> str:
    from evalkit.reports import leaderboard

    rel = lambda name: os.path.relpath(report_dir / name, Path(data["out"]))  # noqa: E731
    lines = ["# evalkit demo", ""]
    if data["warning"]:
        lines += [f"**Warning:** {data['warning']}.", ""]
    lines += [f"Run `{data['run_id']}`: {', '.join(data['variants'])} on the built-in `shapes` dataset "
              f"({data['dataset']['size']} px, {data['dataset']['n_train']} training / {data['dataset']['n_test']} test "
              f"samples), preset `tiny`, training steps "
              + ", ".join(f"{m} {n}" for m, n in data["steps"].items()) + "."
              + (f" Losses: {data['losses_off']}." if data["losses_off"] else ""), ""]
    lines += ["## Leaderboard", "", leaderboard.to_markdown(lb)]
    claims = report_dir / "claims_vs_exemplar_copy.md"
    if claims.is_file():
        lines += ["## Does each exemplar-based method beat copying the exemplar?", "",
                  claims.read_text(encoding="utf-8")]
    papers = report_dir / "claims_vs_papers.md"
    if papers.is_file():
        lines += ["## Which of the papers' orderings does this miniature reproduce?", "",
                  papers.read_text(encoding="utf-8")]
    if (report_dir / "examples.png").is_file():
        lines += ["## Examples", "", "input | exemplar | ground truth | " + " | ".join(METHODS), "",
                  f"![examples]({rel('examples.png')})", ""]
    if (report_dir / "losses.png").is_file():
        lines += ["## Training losses", "", f"![training losses]({rel('losses.png')})", ""]
    lines += ["## Files", ""]
    lines += [f"- `{k}`: {v}" for k, v in sorted(data["files"].items())]
    lines += ["", f"Wall time {data['wall_seconds']} s, CPU time {data['cpu_seconds']} s "
              f"({data['stages_computed']} stages computed, {data['stages_skipped']} skipped; "
              f"{data['train_workers']} training process(es) side by side).", ""]
    return "\n".join(lines)


def format_summary(data: dict) -> str:
    head = f"evalkit demo: {data['out']}/report.md ({data['wall_seconds']} s wall, {data['cpu_seconds']} s CPU)"
    return head + (f"\nwarning: {data['warning']}" if data["warning"] else "")
