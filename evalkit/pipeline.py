"""Benchmark runs: datasets × variants × seeds → train → infer → evaluate → report.

A run lives in ``<out>/<name>/``::

    config.json                 the validated config (and config.hash)
    run.json                    run id, machine fingerprint, git commit, evalkit version
    checkpoints/<dataset>/<variant_dir>/seed<S>/last.pt
    outputs/<dataset>/seed<S>/  the outputs layout (inputs/, <variant_dir>/images, warped, meta.json)
    features/                   feature cache of the metrics (content-addressed)
    eval/<dataset>/seed<S>/<variant_dir>.csv   metric rows of one evaluation
    results.csv                 the long results table (every number with its protocol)
    report/                     leaderboard.{md,html,tex,csv}, paper_tables.{md,html,csv}, metrics.{png,pdf}
    stages/<stage>.json         stage-done markers
    stages.log                  one line per stage start / finish / skip

Every stage writes its outputs atomically, then checks them (:func:`_validate_*`), then
writes its marker atomically: ``{"key": hash of the stage's inputs, "outputs": {file:
size}}``. A later run skips a stage whose marker exists, whose key matches and whose
listed outputs are all still there with the same sizes; anything else is recomputed.
A killed run therefore resumes at the first unfinished stage. The stage key of a stage
includes the markers of the stages it reads, so recomputing a stage invalidates those
downstream of it.

Reference outputs (``reference/ground-truth``, ``reference/blur``,
``reference/colour-shift``, ``reference/exemplar-copy``) are fixed image transforms of
the test samples: no training; they anchor a leaderboard (the ground truth is the best
any method can do; blur, colour shift and copying the exemplar are known failure modes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.functional as TF

from evalkit.config import RunConfig
from evalkit.errors import EvalkitError
from evalkit.reports import results as R

SPLIT = "test"


# -- reference outputs ---------------------------------------------------------------------
def _reference_translator(variant: str):
    from evalkit.methods.translator import TranslationOutput, Translator

    class ReferenceOutputs(Translator):
        """Fixed transforms of the test sample (no parameters, no training)."""

        trainable = False

        def __init__(self, name: str):
            super().__init__()
            self.variant = name

        def translate(self, batch) -> TranslationOutput:
            gt = batch.image
            if self.variant == "reference/ground-truth":
                out = gt
            elif self.variant == "reference/blur":  # Gaussian blur, sigma = side / 32
                side = gt.shape[-1]
                sigma = side / 32
                out = TF.gaussian_blur(gt, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
            elif self.variant == "reference/colour-shift":  # RGB → GBR: same layout, wrong colours
                out = gt.roll(1, dims=1)
            else:  # reference/exemplar-copy
                out = batch.exemplar
            return TranslationOutput(image=out.clone())

    return ReferenceOutputs(variant)


# -- stage bookkeeping ---------------------------------------------------------------------
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _files(root: Path, paths: list[Path]) -> dict[str, int]:
    """{path relative to root: size} for every file under each of ``paths``."""
    out = {}
    for p in paths:
        items = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        for q in items:
            out[str(q.relative_to(root))] = q.stat().st_size
    return out


@dataclass
class StageLog:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class RunDir:
    """Paths and stage markers of one run folder."""

    def __init__(self, root: Path):
        self.root = root
        self.stages = root / "stages"
        self.log = StageLog()

    def _marker(self, stage: str) -> Path:
        return self.stages / (stage.replace("/", "__") + ".json")

    def _append(self, line: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "stages.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
            f.flush()
            os.fsync(f.fileno())

    def marker(self, stage: str) -> dict | None:
        p = self._marker(stage)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def is_done(self, stage: str, key: str) -> bool:
        m = self.marker(stage)
        if m is None or m.get("key") != key:
            return False
        return all((self.root / rel).is_file() and (self.root / rel).stat().st_size == size
                   for rel, size in m["outputs"].items())

    def digest(self, stage: str) -> str:
        """Hash of a finished stage's marker: part of the keys of the stages that read it."""
        m = self.marker(stage)
        return _hash(m) if m else ""

    def run(self, stage: str, key_obj, outputs: list[Path], compute, validate, *, collective: bool = False) -> bool:
        """Run ``compute()`` unless the stage is done; returns True when it computed.

        Under torchrun, rank 0 decides (markers live on its disk) and writes the marker;
        a ``collective`` stage runs ``compute`` on every rank (it communicates), any other
        stage on rank 0 only while the other ranks wait.
        """
        from evalkit import distributed

        main = distributed.env().is_main
        key = _hash(key_obj)
        done = distributed.broadcast(self.is_done(stage, key) if main else None)
        if done:
            self.log.skipped.append(stage)
            if main:
                self._append(f"skip {stage}")
            return False
        if main:
            self._append(f"start {stage}")
        t0 = time.perf_counter()
        if main or collective:
            compute()
        if main:
            validate()
            seconds = time.perf_counter() - t0
            R.write_atomic(self._marker(stage), json.dumps(
                {"stage": stage, "key": key, "outputs": _files(self.root, outputs), "seconds": round(seconds, 3)},
                indent=1))
            self._append(f"done {stage} {seconds:.2f}s")
            self.log.seconds[stage] = seconds
        self.log.done.append(stage)
        distributed.barrier()
        return True


# -- the run ------------------------------------------------------------------------------
@dataclass
class RunSummary:
    run_id: str
    run_dir: Path
    results: Path
    report: dict[str, str]
    computed: list[str]
    skipped: list[str]
    seconds: float
    comparison: dict | None = None

    def as_json(self) -> dict:
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "results": str(self.results),
                "report": self.report, "stages_computed": self.computed, "stages_skipped": self.skipped,
                "seconds": round(self.seconds, 2), "comparison": self.comparison}


def _vdir(variant: str) -> str:
    return variant.replace("/", "__")


class _Progress:
    """One rich progress bar over the run's stages, on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task("run", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()

    def stage(self, name: str):
        if self.bar:
            self.bar.update(self.task, description=name)

    def advance(self):
        if self.bar:
            self.bar.advance(self.task)


def _run_info(cfg: RunConfig, rd: RunDir) -> dict:
    """run.json: created once, kept on resume (the run id stays the same)."""
    path = rd.root / "run.json"
    if path.is_file():
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("config_hash") == cfg.hash():
            return info
    from evalkit.reports.history import RunInfo

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    info = RunInfo.current(f"{cfg.name}-{stamp}-{cfg.hash()[:8]}", cfg.name, cfg.hash(),
                           repo=Path(__file__).resolve().parents[1]).__dict__
    R.write_atomic(path, json.dumps(info, indent=1))
    return info


def _dataset(cfg_d, split: str, seed: int):
    from evalkit.data import get_dataset

    n = cfg_d.n_train if split == "train" else cfg_d.n_test
    return get_dataset(cfg_d.name, root=cfg_d.root, split=split, size=cfg_d.size, n=n, seed=seed, **cfg_d.options)


def _resumable(ckpt_dir: Path, key) -> bool:
    """True when ``ckpt_dir/last.pt`` is a partial training of this very stage (killed run).

    ``train_key.json`` records the stage key a checkpoint folder is training for; a
    checkpoint left by a different config is removed, never resumed.
    """
    key_file, ckpt = ckpt_dir / "train_key.json", ckpt_dir / "last.pt"
    same = key_file.is_file() and key_file.read_text(encoding="utf-8") == _hash(key)
    if ckpt.is_file() and same:
        return True
    for stale in (ckpt, ckpt_dir / "losses.json"):
        stale.unlink(missing_ok=True)
    R.write_atomic(key_file, _hash(key))
    return False


def _validate_outputs(out_dir: Path, variant: str, n: int) -> None:
    images = list((out_dir / _vdir(variant) / "images").glob("*"))
    real = list((out_dir / "inputs" / "real").glob("*.png"))
    if len(images) != n or len(real) < n or not (out_dir / _vdir(variant) / "meta.json").is_file():
        raise EvalkitError(f"inference of {variant} wrote {len(images)} of {n} images into {out_dir}; rerun the stage")


def _validate_csv(path: Path) -> None:
    R.read(path)


def stage_count(cfg: RunConfig) -> int:
    per = sum((0 if v.is_reference or v.checkpoint else 1) + 2 for v in cfg.variants)
    return per * len(cfg.datasets) * len(cfg.seeds) + 1


def run(cfg: RunConfig, *, progress: bool = True, extra_report=None) -> RunSummary:
    """Execute (or resume) the run of ``cfg``; returns what was computed and where.

    ``extra_report(results_df, report_dir) -> dict[name, path]`` adds files to the report
    (the demo's memory profile). With ``report.baseline`` set, ``summary.comparison``
    holds the regression gate's verdict (the CLI exits 1 on a regression).
    Under torchrun it joins the process group; the caller leaves it with
    :func:`evalkit.distributed.shutdown` on every rank (``evalkit run`` does).
    """
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import infer, load_checkpoint, train

    from evalkit import distributed

    t_start = time.perf_counter()
    dist_env = distributed.init()
    main = dist_env.is_main
    rd = RunDir(cfg.run_dir)
    info = None
    if main:
        rd.root.mkdir(parents=True, exist_ok=True)
        R.write_atomic(rd.root / "config.json", json.dumps({"hash": cfg.hash(), "config": cfg.as_dict()}, indent=1))
        info = _run_info(cfg, rd)
    info = distributed.broadcast(info)
    run_id = info["run_id"]
    device = distributed.local_device(cfg.device)
    eval_csvs = []
    nets: dict = {}  # metric backbones, built at the first evaluation that runs
    with _Progress(stage_count(cfg), progress and main) as bar:
        for d in cfg.datasets:
            for seed in cfg.seeds:
                test_ds = _dataset(d, "test", seed)
                out_dir = rd.root / "outputs" / d.name / f"seed{seed}"
                for v in cfg.variants:
                    vd = _vdir(v.name)
                    tag = f"{d.name}/{vd}/seed{seed}"
                    ckpt_dir = rd.root / "checkpoints" / d.name / vd / f"seed{seed}"
                    overrides = {"size": d.size, **v.overrides}
                    train_key = {"dataset": d.__dict__, "variant": v.__dict__, "seed": seed}
                    # -- train (or load) ---------------------------------------------------
                    if v.is_reference:
                        ckpt = None
                    elif v.checkpoint is not None:
                        ckpt = v.checkpoint
                    else:
                        ckpt = ckpt_dir / "last.pt"
                        bar.stage(f"train {tag}")

                        def do_train(v=v, d=d, seed=seed, ckpt_dir=ckpt_dir, overrides=overrides, train_key=train_key):
                            train_ds = _dataset(d, "train", seed)
                            tr = build_translator(v.name, cond_channels=train_ds.cond_channels, preset=v.preset,
                                                  seed=seed, **overrides)
                            if dist_env.world_size == 1:
                                train(tr, train_ds, steps=v.steps, out_dir=ckpt_dir,
                                      resume=_resumable(ckpt_dir, train_key), batch_size=v.batch_size, seed=seed,
                                      progress=progress, log_every=5, device=device,
                                      checkpoint_every=min(1000, max(1, v.steps // 10)))
                            else:
                                distributed.train_ddp(tr, train_ds, steps=v.steps, out_dir=ckpt_dir,
                                                      resume=distributed.broadcast(
                                                          _resumable(ckpt_dir, train_key) if main else None),
                                                      batch_size=v.batch_size, seed=seed, device=device)

                        rd.run(f"train/{tag}", train_key, [ckpt], do_train,
                               lambda ckpt=ckpt: load_checkpoint(ckpt), collective=True)
                        bar.advance()
                    # -- infer ---------------------------------------------------------------
                    bar.stage(f"infer {tag}")
                    upstream = rd.digest(f"train/{tag}") if ckpt is not None and v.checkpoint is None else (
                        _hash([str(v.checkpoint), v.checkpoint.stat().st_size, v.checkpoint.stat().st_mtime])
                        if v.checkpoint is not None else "")

                    def do_infer(v=v, ckpt=ckpt, test_ds=test_ds, out_dir=out_dir):
                        tr = _reference_translator(v.name) if ckpt is None else load_checkpoint(ckpt, device)
                        infer(tr, test_ds, out_dir, progress=False, device=device)

                    rd.run(f"infer/{tag}", {"train": upstream, "dataset": d.__dict__, "variant": v.name, "seed": seed},
                           [out_dir / vd, out_dir / "inputs"], do_infer,
                           lambda v=v, out_dir=out_dir: _validate_outputs(out_dir, v.name, len(test_ds)))
                    bar.advance()
                    # -- evaluate ------------------------------------------------------------
                    bar.stage(f"evaluate {tag}")
                    csv = rd.root / "eval" / d.name / f"seed{seed}" / f"{vd}.csv"

                    def do_eval(v=v, d=d, seed=seed, out_dir=out_dir, csv=csv):
                        if not nets:
                            nets.update(metric_backbones(cfg.evaluation.metrics, cfg.evaluation.weights, device))
                        rows = evaluate_outputs(out_dir, v.name, metrics=cfg.evaluation.metrics,
                                                weights=cfg.evaluation.weights, cache_dir=rd.root / "features",
                                                device=device, backbones=nets)
                        if main:
                            table = R.make_rows(rows, run_id=run_id, method=v.name.split("/")[0], dataset=d.name,
                                                split=SPLIT, seed=seed, variant=v.name)
                            R.write(table, csv)

                    rd.run(f"evaluate/{tag}", {"infer": rd.digest(f"infer/{tag}"), "evaluation": cfg.evaluation.__dict__},
                           [csv], do_eval, lambda csv=csv: _validate_csv(csv), collective=True)
                    eval_csvs.append((f"evaluate/{tag}", csv))
                    bar.advance()
        # -- report ------------------------------------------------------------------------
        bar.stage("report")
        results_path = rd.root / "results.csv"
        report_dir = rd.root / "report"
        report_files: dict[str, str] = {}

        def do_report():
            table = pd.concat([R.read(csv) for _, csv in eval_csvs], ignore_index=True)
            table["run_id"] = run_id  # evaluations are reused across runs whose other stages changed
            R.write(table, results_path)
            report_files.update(write_report(table, report_dir, cfg, rd.root / "outputs"))
            if extra_report is not None:
                report_files.update({k: str(p) for k, p in extra_report(table, report_dir).items()})
            from evalkit.reports import history

            history.record(cfg.history_path, history.RunInfo(**info), table)

        rd.run("report", {"evals": [rd.digest(s) for s, _ in eval_csvs], "report": cfg.report.__dict__,
                          "history": str(cfg.history_path), "run_id": run_id},
               [results_path, report_dir], do_report, lambda: _validate_csv(results_path))
        bar.advance()
    if not report_files:
        report_files = {p.name: str(p) for p in sorted(report_dir.glob("*")) if p.is_file()}
    summary = RunSummary(run_id=run_id, run_dir=rd.root, results=results_path, report=report_files,
                         computed=rd.log.done, skipped=rd.log.skipped, seconds=time.perf_counter() - t_start)
    if cfg.report.baseline and main:
        summary.comparison = _gate(cfg, results_path)
    return summary


def metric_backbones(metrics, weights: str, device: str) -> dict:
    """The metric backbones a run needs, built once and shared by all its evaluations
    (the same networks :func:`evalkit.metrics.evaluate_folders` would build each time)."""
    from evalkit.features import InceptionFID, VGG19Features
    from evalkit.metrics import METRICS, LPIPSAlex

    families = {m.lower() for m in metrics} if metrics else set(METRICS)
    nets = {}
    if families & {"fid", "kid"}:
        nets["inception"] = InceptionFID("clean", weights, 0, device=device)
    if families & {"lpips", "lpips-diversity"}:
        nets["lpips"] = LPIPSAlex(weights, 0, device=device)
    if "vgg" in families:
        nets["vgg"] = VGG19Features(weights, 0, device=device)
    return nets


def evaluate_outputs(out_dir: Path, variant: str, *, metrics=None, weights="pretrained", cache_dir=None,
                     device: str = "cpu", backbones: dict | None = None) -> pd.DataFrame:
    """Metric rows of one variant's outputs folder (the outputs layout), against its inputs;
    under torchrun the backbone passes are sharded over the ranks (:mod:`evalkit.distributed`)."""
    from evalkit import distributed

    return distributed.evaluate_folders(out_dir / _vdir(variant) / "images", out_dir / "inputs" / "real",
                                        exemplars=out_dir / "inputs" / "exemplar", pairs=out_dir / "inputs" / "pairs.csv",
                                        metrics=list(metrics) if metrics else None, weights=weights, cache_dir=cache_dir,
                                        device=device, backbones=backbones)


def write_report(table: pd.DataFrame, report_dir: Path, cfg: RunConfig, outputs_root: Path) -> dict[str, str]:
    """Leaderboard (formats of the config), paper tables, metric plots; returns name → path."""
    from evalkit.reports import leaderboard, paper_tables, plots

    files = {}
    first = cfg.datasets[0].name
    grid_dir = outputs_root / first / f"seed{cfg.seeds[0]}"
    notes = [f"run {cfg.name}; seeds {list(cfg.seeds)}; datasets {', '.join(d.name for d in cfg.datasets)}; "
             f"example outputs: {first}, seed {cfg.seeds[0]}."]
    for k, p in leaderboard.write(table, report_dir, outputs_dir=grid_dir if cfg.report.examples else None,
                                  n_examples=cfg.report.examples, notes=notes).items():
        if k in cfg.report.formats:
            files[f"leaderboard.{k}"] = str(p)
        else:
            p.unlink()
    for k, p in paper_tables.write(table, report_dir, dataset_map=cfg.report.paper_datasets).items():
        files[f"paper_tables.{k}"] = str(p)
    for p in plots.metric_bars(table, report_dir / "metrics"):
        files[p.name] = str(p)
    from evalkit.reports import bootstrap

    claims = bootstrap_claims(table, cfg, outputs_root, outputs_root.parent / "features")
    files["claims.md"] = str(R.write_atomic(report_dir / "claims.md", bootstrap.claims_markdown(claims)))
    files["claims.csv"] = str(R.write_atomic(report_dir / "claims.csv", claims.to_csv(index=False, float_format="%.10g")))
    return files


CLAIM_METRICS = ("FID", "LPIPS-gt", "PSNR", "SSIM")


def _per_item(metric: str, gen: torch.Tensor, real: torch.Tensor, cache, weights: str, nets: dict):
    """Per-item values of ``metric`` (``(values, None)``; FID: ``(generated features, real
    features)``, read from the run's feature cache where present). ``nets`` keeps the
    backbones built so far."""
    from evalkit.features import FeatureCache, InceptionFID
    from evalkit.images import content_hash
    from evalkit.metrics import LPIPSAlex, lpips_distance, psnr, ssim

    if metric == "PSNR":
        return psnr(gen, real), None
    if metric == "SSIM":
        return ssim(gen, real), None
    if metric == "LPIPS-gt":
        net = nets.setdefault("lpips", LPIPSAlex(weights, 0))
        return lpips_distance(gen, real, model=net), None
    net = nets.setdefault("inception", InceptionFID("clean", weights))
    ns = FeatureCache.namespace(**net.protocol_key())

    def feats(images):
        out = [cache.get(ns, content_hash(x)) for x in images]
        todo = [i for i, f in enumerate(out) if f is None]
        if todo:
            for i, f in zip(todo, net(images[todo]).numpy()):
                out[i] = f
        return np.stack(out)

    return feats(gen), feats(real)


def bootstrap_claims(table: pd.DataFrame, cfg: RunConfig, outputs_root: Path, cache_dir: Path, *,
                     n_boot: int = 1000) -> pd.DataFrame:
    """Paired bootstrap of the leaderboard's best vs runner-up trained variant, per dataset
    and metric of :data:`CLAIM_METRICS`, over the test items of the first seed."""

    from evalkit.features import FeatureCache
    from evalkit.images import load_image, stack_images
    from evalkit.metrics import fid_from_features
    from evalkit.reports import bootstrap as B

    cache = FeatureCache(cache_dir)
    seed = cfg.seeds[0]
    rows, nets = [], {}
    trained = table[~table["variant"].str.startswith("reference/") & (table["seed"] == seed)]
    for d in cfg.datasets:
        out_dir = outputs_root / d.name / f"seed{seed}"
        sub = trained[trained["dataset"] == d.name]
        names = sorted(p.stem for p in (out_dir / "inputs" / "real").glob("*.png"))
        real = torch.from_numpy(stack_images([load_image(out_dir / "inputs" / "real" / f"{n}.png") for n in names],
                                             names, str(out_dir / "inputs" / "real")))
        for metric in CLAIM_METRICS:
            m = sub[sub["metric"] == metric].sort_values("value", ascending=not R.higher_is_better(metric))
            if len(m) < 2:
                continue
            a, b = m["variant"].iloc[0], m["variant"].iloc[1]
            per = {}
            for v in (a, b):
                folder = out_dir / _vdir(v) / "images"
                gen = torch.from_numpy(stack_images([load_image(next(folder.glob(f"{n}.*"))) for n in names], names,
                                                    str(folder)))
                per[v] = _per_item(metric, gen, real, cache, cfg.evaluation.weights, nets)
            hib = R.higher_is_better(metric)
            if metric == "FID":
                ref = per[a][1]
                res = B.paired_bootstrap(per[a][0], per[b][0], higher_is_better=hib, reference=ref,
                                         statistic=fid_from_features, n_boot=n_boot, seed=seed)
            else:
                res = B.paired_bootstrap(np.asarray(per[a][0]), np.asarray(per[b][0]), higher_is_better=hib,
                                         n_boot=n_boot, seed=seed)
            rows.append(B.claim_row(d.name, seed, metric, a, b, res))
    return pd.DataFrame(rows, columns=B.CLAIM_COLUMNS)


def _gate(cfg: RunConfig, results_path: Path) -> dict:
    from evalkit.reports import history

    policy = history.Policy.load(cfg.report.policy) if cfg.report.policy else history.Policy()
    _, base_machine, base = history.load_side(cfg.report.baseline, cfg.history_path)
    _, head_machine, head = history.load_side(str(results_path), None)
    table = history.compare(base, head, policy, same_machine=base_machine is not None and base_machine == head_machine)
    path = results_path.parent / "report" / "compare.txt"
    R.write_atomic(path, history.format_table(table) + "\n")
    return {"baseline": cfg.report.baseline, "regressions": int(len(history.failures(table, policy))),
            "table": str(path)}


def print_summary(summary: RunSummary, stream=None) -> None:
    print(f"run {summary.run_id}: {len(summary.computed)} stage(s) computed, {len(summary.skipped)} skipped "
          f"in {summary.seconds:.1f}s → {summary.run_dir}", file=stream or sys.stderr)
