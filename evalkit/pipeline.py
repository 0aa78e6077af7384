"""Benchmark runs: datasets × variants × seeds → train → infer → evaluate → report.

A run lives in ``<out>/<name>/``::

    config.json                 the validated config (and config.hash)
    run.json                    run id, machine fingerprint, git commit, evalkit version
    checkpoints/<dataset>/<variant_dir>/seed<S>/last.pt
    outputs/<dataset>/seed<S>/  the outputs layout (evalkit.layout: inputs/, <variant_dir>/images, warped, meta.json)
    features/                   feature cache of the metrics (content-addressed)
    eval/<dataset>/seed<S>/<variant_dir>.csv   metric rows of one evaluation
    results.csv                 the long results table (every number with its protocol)
    report/                     leaderboard.{md,html,tex,csv}, paper_tables.{md,html,csv}, metrics.{png,pdf}, claims
    stages/<stage>.json         stage-done markers (evalkit.stages)
    stages.log                  one line per stage start / finish / skip

:func:`plan` turns a config into a flat list of :class:`Stage` s; :func:`run` executes
them in order, each through :meth:`evalkit.stages.RunDir.run`, so a killed run resumes at
its first unfinished stage. Reference outputs (``reference/ground-truth``, ...) are
non-trainable variants of the methods registry (:mod:`evalkit.baselines.reference`): they
have no train stage, like a variant loaded from a checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.config import DatasetConfig, RunConfig, VariantConfig
from evalkit.errors import EvalkitError
from evalkit.files import write_atomic
from evalkit.layout import OutputsLayout, variant_dir
from evalkit.progress import Progress
from evalkit.reports import results as R
from evalkit.stages import RunDir, stage_hash

SPLIT = "test"


# -- the plan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One step of a run. ``kind`` is ``train`` | ``infer`` | ``evaluate`` | ``report``;
    ``dataset``/``variant``/``seed`` say which cell of the run it belongs to."""

    kind: str
    dataset: DatasetConfig | None = None
    variant: VariantConfig | None = None
    seed: int | None = None

    @property
    def tag(self) -> str:
        return f"{self.dataset.name}/{variant_dir(self.variant.key)}/seed{self.seed}"

    @property
    def name(self) -> str:
        return "report" if self.kind == "report" else f"{self.kind}/{self.tag}"


def trains(v: VariantConfig) -> bool:
    """A variant trains in the run unless it is a reference output, an external method's
    saved outputs (``outputs``) or loads a checkpoint."""
    return v.trains


def plan(cfg: RunConfig) -> list[Stage]:
    """The run's stages in execution order: per dataset, seed and variant train (when it
    trains) → infer → evaluate; one report at the end."""
    stages = []
    for d in cfg.datasets:
        for seed in cfg.seeds:
            for v in cfg.variants:
                kinds = (("train",) if trains(v) else ()) + ("infer", "evaluate")
                stages += [Stage(k, d, v, seed) for k in kinds]
    return stages + [Stage("report")]


def stage_count(cfg: RunConfig) -> int:
    return len(plan(cfg))


# -- executing it --------------------------------------------------------------------------
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


@dataclass
class _Run:
    """State shared by the stages of one execution."""

    cfg: RunConfig
    rd: RunDir
    run_id: str
    info: dict
    device: str
    world_size: int
    progress: bool
    extra_report: object = None
    backbones: dict = field(default_factory=dict)  # metric backbones, built at the first evaluation that runs
    eval_csvs: list = field(default_factory=list)  # (stage name, csv) of every evaluation, in plan order
    report_files: dict = field(default_factory=dict)

    def outputs(self, s: Stage) -> OutputsLayout:
        return OutputsLayout(self.rd.root / "outputs" / s.dataset.name / f"seed{s.seed}")

    def checkpoint_dir(self, s: Stage) -> Path:
        return self.rd.root / "checkpoints" / s.dataset.name / variant_dir(s.variant.key) / f"seed{s.seed}"

    def eval_csv(self, s: Stage) -> Path:
        return self.rd.root / "eval" / s.dataset.name / f"seed{s.seed}" / f"{variant_dir(s.variant.key)}.csv"

    @property
    def evaluation(self):
        """The evaluation options of the run: the run's feature cache unless the config names
        one, the run's device unless the config sets one."""
        from evalkit import protocols

        ev = self.cfg.evaluation
        return protocols.resolve(ev.replace(cache_dir=ev.cache_dir or self.rd.root / "features",
                                            device=self.device if ev.device == "auto" else ev.device))


def _dataset(d: DatasetConfig, split: str, seed: int):
    from evalkit.data import get_dataset

    n = d.n_train if split == "train" else d.n_test
    # the data instance is the dataset's own seed; the run's seeds vary initialisation and order
    return get_dataset(d.name, root=d.root, split=split, size=d.size, n=n, seed=d.data_seed, **d.options)


def _train_key(s: Stage) -> dict:
    return {"dataset": s.dataset.__dict__, "variant": s.variant.fields(), "seed": s.seed}


def _resumable(ckpt_dir: Path, key) -> bool:
    """True when ``ckpt_dir/last.pt`` is a partial training of this very stage (killed run).

    ``train_key.json`` records the stage key a checkpoint folder is training for; a
    checkpoint left by a different config is removed, never resumed.
    """
    key_file, ckpt = ckpt_dir / "train_key.json", ckpt_dir / "last.pt"
    same = key_file.is_file() and key_file.read_text(encoding="utf-8") == stage_hash(key)
    if ckpt.is_file() and same:
        return True
    for stale in (ckpt, ckpt_dir / "losses.json"):
        stale.unlink(missing_ok=True)
    write_atomic(key_file, stage_hash(key))
    return False


def _run_train(r: _Run, s: Stage) -> None:
    from evalkit import distributed
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import load_checkpoint, train

    d, v, seed = s.dataset, s.variant, s.seed
    ckpt_dir = r.checkpoint_dir(s)
    ckpt = ckpt_dir / "last.pt"

    def compute():
        train_ds = _dataset(d, "train", seed)
        tr = build_translator(v.name, cond_channels=train_ds.cond_channels, preset=v.preset, seed=seed,
                              **{"size": d.size, **v.overrides})
        if r.world_size == 1:
            train(tr, train_ds, steps=v.steps, out_dir=ckpt_dir, resume=_resumable(ckpt_dir, _train_key(s)),
                  batch_size=v.batch_size, seed=seed, progress=r.progress, log_every=5, device=r.device,
                  checkpoint_every=min(1000, max(1, v.steps // 10)))
        else:
            from evalkit.methods.ddp import train_ddp

            main = distributed.env().is_main
            resume = distributed.broadcast(_resumable(ckpt_dir, _train_key(s)) if main else None)
            train_ddp(tr, train_ds, steps=v.steps, out_dir=ckpt_dir, resume=resume, batch_size=v.batch_size,
                      seed=seed, device=r.device)

    r.rd.run(s.name, _train_key(s), [ckpt], compute, lambda: load_checkpoint(ckpt), collective=True)


def _run_infer(r: _Run, s: Stage) -> None:
    from evalkit.methods.registry import build_translator
    from evalkit.methods.training import infer, load_checkpoint

    d, v, seed = s.dataset, s.variant, s.seed
    layout = r.outputs(s)
    test_ds = _dataset(d, "test", seed)
    extra = {}
    if trains(v):
        ckpt, upstream = r.checkpoint_dir(s) / "last.pt", r.rd.digest(Stage("train", d, v, seed).name)
    elif v.checkpoint is not None:
        ckpt = v.checkpoint
        upstream = stage_hash([str(ckpt), ckpt.stat().st_size, ckpt.stat().st_mtime])
    elif v.folder is not None:  # an external method's saved outputs: recomputed when the files change
        ckpt, extra = None, {"folder": v.folder}
        upstream = stage_hash([(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                               for p in sorted(v.folder.iterdir()) if p.is_file()])
    else:
        ckpt, upstream = None, ""

    def compute():
        tr = (build_translator(v.name, cond_channels=test_ds.cond_channels, preset=v.preset, seed=seed, **extra)
              if ckpt is None else load_checkpoint(ckpt, r.device))
        infer(tr, test_ds, layout.root, progress=False, device=r.device, name=v.key)

    def validate():
        images = layout.image_files(layout.images(v.key))
        real = layout.image_files(layout.real)
        if len(images) != len(test_ds) or len(real) != len(test_ds) or not layout.meta_path(v.key).is_file():
            raise EvalkitError(f"inference of {v.key} wrote {len(images)} of {len(test_ds)} images into "
                               f"{layout.root}; rerun the stage")

    key = {"train": upstream, "dataset": d.__dict__, "variant": v.key, "seed": seed}
    if v.key != v.name:
        key["name"] = v.name
    r.rd.run(s.name, key, [layout.variant(v.key), layout.inputs], compute, validate)


def _run_evaluate(r: _Run, s: Stage) -> None:
    from evalkit.metrics import registry

    d, v, seed = s.dataset, s.variant, s.seed
    csv = r.eval_csv(s)
    options = r.evaluation

    def compute():
        r.backbones.update(registry.build_backbones(options.metrics, options, options.device, have=r.backbones))
        rows = evaluate_outputs(r.outputs(s).root, v.key, options=options, backbones=r.backbones)
        from evalkit import distributed

        if distributed.env().is_main:
            table = R.make_rows(rows, run_id=r.run_id, method=v.method, dataset=d.name,
                                split=SPLIT, seed=seed, variant=v.key)
            R.write(table, csv)

    key = {"infer": r.rd.digest(Stage("infer", d, v, seed).name), "evaluation": r.cfg.evaluation.__dict__}
    r.rd.run(s.name, key, [csv], compute, lambda: R.read(csv), collective=True)
    r.eval_csvs.append((s.name, csv))


def _run_report(r: _Run, s: Stage) -> None:
    from evalkit.reports import history
    from evalkit.reports.run_report import write_report

    cfg, rd = r.cfg, r.rd
    results_path, report_dir = rd.root / "results.csv", rd.root / "report"

    def compute():
        table = pd.concat([R.read(csv) for _, csv in r.eval_csvs], ignore_index=True)
        table["run_id"] = r.run_id  # evaluations are reused across runs whose other stages changed
        R.write(table, results_path)
        r.report_files.update(write_report(
            table, report_dir, name=cfg.name, outputs_root=rd.root / "outputs",
            datasets=[d.name for d in cfg.datasets], seeds=list(cfg.seeds), formats=cfg.report.formats,
            examples=cfg.report.examples, paper_datasets=cfg.report.paper_datasets, options=r.evaluation,
            cache_dir=r.evaluation.cache_root))
        if r.extra_report is not None:
            r.report_files.update({k: str(p) for k, p in r.extra_report(table, report_dir).items()})
        history.record(cfg.history_path, history.RunInfo(**r.info), table)

    key = {"evals": [rd.digest(name) for name, _ in r.eval_csvs], "report": cfg.report.__dict__,
           "history": str(cfg.history_path), "run_id": r.run_id}
    rd.run(s.name, key, [results_path, report_dir], compute, lambda: R.read(results_path))


_EXECUTE = {"train": _run_train, "infer": _run_infer, "evaluate": _run_evaluate, "report": _run_report}


# -- training side by side -----------------------------------------------------------------
def _train_in_parallel(r: _Run, stages: list[Stage], on_done) -> set[str]:
    """Run the unfinished train stages in ``cfg.train_workers`` processes side by side (each
    with ``cores // train_workers`` threads, longest training first); returns the names of the
    stages they computed. Each process is a fresh interpreter running :func:`_train_worker`
    on one stage, which writes its checkpoint and stage marker exactly as the sequential path
    does; its stderr goes to ``stages/<stage>.log``. A failed training stops the others and
    raises one error naming the stage, its log and the log's last line."""
    import os
    import pickle
    import subprocess

    from evalkit import devices

    todo = [s for s in stages if s.kind == "train"
            and not r.rd.is_done(s.name, stage_hash(_train_key(s)))]
    if len(todo) < 2:
        return set()
    todo.sort(key=lambda s: -s.variant.steps)
    cores = devices.cpu_cores()
    workers = min(r.cfg.train_workers, len(todo))
    threads = str(max(1, cores // workers))
    r.rd.stages.mkdir(parents=True, exist_ok=True)
    running: dict = {}  # Popen -> (stage, log path, log file)
    done: set[str] = set()

    def start(s: Stage) -> None:
        job = r.rd.stages / (s.name.replace("/", "__") + ".job")
        job.write_bytes(pickle.dumps((r.cfg, s, r.info)))
        log_path = r.rd.stages / (s.name.replace("/", "__") + ".log")
        log = open(log_path, "w", encoding="utf-8")
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        proc = subprocess.Popen([sys.executable, "-c", f"from evalkit.pipeline import _train_worker; "
                                 f"_train_worker({str(job)!r})"], env=env, stdout=subprocess.DEVNULL,
                                stderr=log, stdin=subprocess.DEVNULL)
        running[proc] = (s, log_path, log, job)

    try:
        while todo or running:
            while todo and len(running) < workers:
                start(todo.pop(0))
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                s, log_path, log, job = running.pop(proc)
                log.close()
                job.unlink(missing_ok=True)
                if proc.returncode != 0:
                    lines = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
                    raise EvalkitError(f"training {s.name} failed in its process (exit {proc.returncode}; log "
                                       f"{log_path}): {lines[-1] if lines else 'no output'}")
                marker = r.rd.marker(s.name) or {}
                r.rd.log.done.append(s.name)
                r.rd.log.seconds[s.name] = float(marker.get("seconds", 0.0))
                done.add(s.name)
                on_done(s)
    finally:
        for proc, (_, _, log, job) in running.items():
            proc.kill()
            proc.wait()
            log.close()
            job.unlink(missing_ok=True)
    return done


def _train_worker(job: str) -> None:
    """One train stage in its own process (see :func:`_train_in_parallel`; torch takes its thread
    count from the ``OMP_NUM_THREADS`` the parent set)."""
    import pickle

    cfg, s, info = pickle.loads(Path(job).read_bytes())
    r = _Run(cfg, RunDir(cfg.run_dir), info["run_id"], info, "cpu", 1, False)
    try:
        _run_train(r, s)
    except EvalkitError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _run_info(cfg: RunConfig, rd: RunDir) -> dict:
    """run.json: created once, kept on resume (the run id stays the same)."""
    path = rd.root / "run.json"
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            info = {}  # unreadable: a new run id (the stages' own markers decide what is reused)
        if isinstance(info, dict) and info.get("config_hash") == cfg.hash():
            return info
    from evalkit.reports.history import RunInfo

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    info = RunInfo.current(f"{cfg.name}-{stamp}-{cfg.hash()[:8]}", cfg.name, cfg.hash(),
                           repo=Path(__file__).resolve().parents[1]).__dict__
    write_atomic(path, json.dumps(info, indent=1))
    return info


def run(cfg: RunConfig, *, progress: bool = True, extra_report=None) -> RunSummary:
    """Execute (or resume) the run of ``cfg``; returns what was computed and where.

    ``extra_report(results_df, report_dir) -> dict[name, path]`` adds files to the report
    (the demo's memory profile). With ``report.baseline`` set, ``summary.comparison``
    holds the regression gate's verdict (the CLI exits 1 on a regression).
    Under torchrun it joins the process group; the caller leaves it with
    :func:`evalkit.distributed.shutdown` on every rank (``evalkit run`` does).
    """
    from evalkit import distributed

    t_start = time.perf_counter()
    dist_env = distributed.init()
    main = dist_env.is_main
    rd = RunDir(cfg.run_dir)
    info = None
    if main:
        rd.root.mkdir(parents=True, exist_ok=True)
        write_atomic(rd.root / "config.json", json.dumps({"hash": cfg.hash(), "config": cfg.as_dict()}, indent=1))
        info = _run_info(cfg, rd)
    info = distributed.broadcast(info)
    r = _Run(cfg, rd, info["run_id"], info, distributed.local_device(cfg.device), dist_env.world_size,
             progress and main, extra_report)
    stages = plan(cfg)
    with Progress(progress and main) as bars:
        advance = bars.task("run", len(stages))
        in_parallel: set[str] = set()
        if cfg.train_workers > 1 and dist_env.world_size == 1:
            advance.describe(f"train ({cfg.train_workers} processes side by side)")
            in_parallel = _train_in_parallel(r, stages, lambda s: advance())
        for s in stages:
            if s.name in in_parallel:
                continue
            advance.describe(f"{s.kind} {s.tag}" if s.kind != "report" else "report")
            _EXECUTE[s.kind](r, s)
            advance()
    report_dir = rd.root / "report"
    report_files = r.report_files or {p.name: str(p) for p in sorted(report_dir.glob("*")) if p.is_file()}
    summary = RunSummary(run_id=r.run_id, run_dir=rd.root, results=rd.root / "results.csv", report=report_files,
                         computed=rd.log.done, skipped=rd.log.skipped, seconds=time.perf_counter() - t_start)
    if cfg.report.baseline and main:
        summary.comparison = _gate(cfg, summary.results)
    return summary


def evaluate_outputs(out_dir: Path, variant: str, *, options=None, backbones: dict | None = None,
                     **option_fields) -> pd.DataFrame:
    """Metric rows of one variant's outputs folder (the outputs layout), against its inputs;
    under torchrun the backbone passes are sharded over the ranks (:mod:`evalkit.metrics.sharded`)."""
    from evalkit.metrics import sharded

    layout = OutputsLayout(out_dir)
    return sharded.evaluate_folders(layout.images(variant), layout.real, exemplars=layout.exemplar,
                                    pairs=layout.pairs, options=options, backbones=backbones, **option_fields)


def _gate(cfg: RunConfig, results_path: Path) -> dict:
    from evalkit.reports import history

    verdict = history.gate(cfg.report.baseline, str(results_path), policy=cfg.report.policy, db=cfg.history_path)
    path = results_path.parent / "report" / "compare.txt"
    write_atomic(path, history.format_table(verdict.table) + "\n")
    return {"baseline": cfg.report.baseline, "regressions": verdict.regressions, "table": str(path)}


def print_summary(summary: RunSummary, stream=None) -> None:
    print(f"run {summary.run_id}: {len(summary.computed)} stage(s) computed, {len(summary.skipped)} skipped "
          f"in {summary.seconds:.1f}s → {summary.run_dir}", file=stream or sys.stderr)
