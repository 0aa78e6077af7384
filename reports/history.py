"""Regression tracking: a history of runs and their measurements (SQLite, WAL mode).

Tables::

    runs(run_id PK, name, git_commit, dirty, time, machine, config_hash, evalkit_version)
    measurements(run_id, method, dataset, split, metric, variant, seed, value, n,
                 comparable, weights_sha256)

:func:`compare` lines up two runs metric by metric. Each metric has a direction and a
tolerance from the policy (:class:`Policy`); a change against the metric's direction
larger than its tolerance is a regression::

    tol = max(abs, rel · |base|, sigmas · sqrt(s_base² / k_base + s_head² / k_head))

where ``s`` is the sample std over seeds and ``k`` the number of seeds: deterministic
metrics (one seed, no noise) are held to the tight ``abs``/``rel``; trained-model metrics
measured over several seeds get a noise-aware band. Speed and memory figures are compared
only when both runs have the same machine fingerprint; numbers whose protocols differ
(backbone weights, resolution, resize, image format) are reported, never compared.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import platform
import sqlite3
import subprocess
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.errors import EvalkitError
from evalkit.reports import results as R

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs(
    run_id TEXT PRIMARY KEY, name TEXT, git_commit TEXT, dirty INTEGER, time TEXT,
    machine TEXT, config_hash TEXT, evalkit_version TEXT);
CREATE TABLE IF NOT EXISTS measurements(
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    method TEXT, dataset TEXT, split TEXT, metric TEXT, variant TEXT, seed INTEGER,
    value REAL, n INTEGER, comparable INTEGER, weights_sha256 TEXT, protocol TEXT,
    PRIMARY KEY(run_id, variant, dataset, split, metric, seed));
"""
_PROTOCOL_FIELDS = ("backbone", "weights_sha256", "resolution", "resize", "image_format")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating) a history database in WAL mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.executescript(SCHEMA)
    return con


def machine_fingerprint() -> str:
    """Short hash of what bounds speed and memory: CPU model and count, RAM, GPU, torch, OS."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu-only"
    parts = [platform.system(), platform.machine(), cpu, str(os.cpu_count()), str(ram // 2**30), gpu, torch.__version__]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def git_state(repo: str | Path = ".") -> tuple[str, bool]:
    """(commit, dirty) of the git checkout at ``repo``; ``("none", False)`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "none", False
    return commit, bool(status.strip())


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    name: str
    git_commit: str
    dirty: bool
    time: str
    machine: str
    config_hash: str
    evalkit_version: str

    @classmethod
    def current(cls, run_id: str, name: str, config_hash: str, repo: str | Path = ".") -> "RunInfo":
        from evalkit import __version__

        commit, dirty = git_state(repo)
        return cls(run_id=run_id, name=name, git_commit=commit, dirty=dirty,
                   time=datetime.now(timezone.utc).isoformat(timespec="seconds"), machine=machine_fingerprint(),
                   config_hash=config_hash, evalkit_version=__version__)


def _protocol_key(row) -> str:
    return "|".join(str(row[f]) for f in _PROTOCOL_FIELDS)


def record(db: str | Path, info: RunInfo, results: pd.DataFrame) -> int:
    """Insert (or replace) a run and its measurements; returns the number of measurements."""
    results = R.validate(results)
    con = connect(db)
    try:
        with con:
            con.execute("DELETE FROM measurements WHERE run_id = ?", (info.run_id,))
            con.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                        (info.run_id, info.name, info.git_commit, int(info.dirty), info.time, info.machine,
                         info.config_hash, info.evalkit_version))
            con.executemany(
                "INSERT INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(info.run_id, r.method, r.dataset, r.split, r.metric, r.variant, int(r.seed), float(r.value), int(r.n),
                  int(r.comparable), r.weights_sha256, _protocol_key(r._asdict())) for r in results.itertuples(index=False)])
    finally:
        con.close()
    return len(results)


def runs(db: str | Path) -> pd.DataFrame:
    con = connect(db)
    try:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY time, rowid", con)
    finally:
        con.close()


def load_run(db: str | Path, run_id: str) -> tuple[RunInfo, pd.DataFrame]:
    """A run's info and its measurements (``value`` per method/variant/dataset/split/metric/seed)."""
    if not Path(db).is_file():
        raise EvalkitError(f"history database not found: {db} (runs record into it when they finish)", path=db)
    con = connect(db)
    try:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY time DESC LIMIT 5")]
            raise EvalkitError(f"run {run_id!r} not in history {db} (latest: {', '.join(known) or 'none'})", path=db)
        m = pd.read_sql_query("SELECT * FROM measurements WHERE run_id = ?", con, params=(run_id,))
    finally:
        con.close()
    info = RunInfo(*row[:3], bool(row[3]), *row[4:])
    m["comparable"] = m["comparable"].astype(bool)
    return info, m


@dataclass(frozen=True)
class Rule:
    """Direction and tolerance of one metric (see module docstring for the formula)."""

    higher_is_better: bool | None = None  # None: the metric's default direction
    abs: float = 1e-6
    rel: float = 1e-6
    sigmas: float = 2.0


@dataclass(frozen=True)
class Policy:
    """Per-metric rules; keys are metric names or fnmatch patterns (``SWD@*``, ``time-*``)."""

    rules: dict[str, Rule] = field(default_factory=dict)
    default: Rule = Rule()
    speed: Rule = Rule(abs=0.0, rel=0.10, sigmas=2.0)
    memory: Rule = Rule(abs=0.0, rel=0.05, sigmas=0.0)
    fail_on_missing: bool = True

    def rule(self, metric: str) -> Rule:
        if metric in self.rules:
            r = self.rules[metric]
        else:
            r = next((r for pat, r in self.rules.items() if fnmatch.fnmatchcase(metric, pat)),
                     {"speed": self.speed, "memory": self.memory}.get(R.metric_kind(metric), self.default))
        return r if r.higher_is_better is not None else replace(r, higher_is_better=R.higher_is_better(metric))

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Read a TOML policy::

            fail_on_missing = true
            [default]            # quality metrics not listed below
            abs = 1e-6
            rel = 1e-6
            sigmas = 2.0
            [speed]              # time-*, latency-*, throughput-*
            rel = 0.10
            [memory]             # peak-memory-*
            rel = 0.05
            [metrics.FID]
            abs = 0.5
            direction = "lower"  # or "higher"
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EvalkitError(f"policy file not found: {path}", path=path) from None
        except tomllib.TOMLDecodeError as err:
            raise EvalkitError(f"policy {path} is not valid TOML: {err}", path=path) from err
        problems = []

        def rule(d, where, base: Rule) -> Rule:
            if not isinstance(d, dict):
                problems.append(f"{where}: expected a table")
                return base
            kw = {}
            for k, v in d.items():
                if k == "direction":
                    if v not in ("lower", "higher"):
                        problems.append(f"{where}.direction: expected \"lower\" or \"higher\", got {v!r}")
                    else:
                        kw["higher_is_better"] = v == "higher"
                elif k in ("abs", "rel", "sigmas"):
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                        problems.append(f"{where}.{k}: expected a number >= 0, got {v!r}")
                    else:
                        kw[k] = float(v)
                else:
                    problems.append(f"{where}: unknown key {k!r} (expected direction, abs, rel, sigmas)")
            return replace(base, **kw)

        unknown = set(data) - {"default", "speed", "memory", "metrics", "fail_on_missing"}
        problems += [f"unknown top-level key {k!r}" for k in sorted(unknown)]
        pol = cls()
        kw = {k: rule(data[k], k, getattr(pol, k)) for k in ("default", "speed", "memory") if k in data}
        metrics = data.get("metrics", {})
        rules = {m: rule(d, f"metrics.{m}", kw.get("default", pol.default)) for m, d in metrics.items()} \
            if isinstance(metrics, dict) else {}
        fom = data.get("fail_on_missing", True)
        if not isinstance(fom, bool):
            problems.append("fail_on_missing: expected true or false")
        if problems:
            raise EvalkitError(f"policy {path}: " + "; ".join(problems), path=path)
        return cls(rules=rules, fail_on_missing=fom, **kw)


_KEYS = ["method", "variant", "dataset", "split", "metric"]


def _summary(m: pd.DataFrame) -> pd.DataFrame:
    g = m.groupby(_KEYS, sort=False)
    return g.agg(mean=("value", "mean"), std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0),
                 k=("value", "size"), protocol=("protocol", "first")).reset_index()


def compare(base: pd.DataFrame, head: pd.DataFrame, policy: Policy | None = None, *,
            same_machine: bool) -> pd.DataFrame:
    """Line up two runs' measurements; one row per (method, variant, dataset, split, metric).

    ``status`` is one of ``ok``, ``improved``, ``regression``, ``missing`` (in base, not
    in head), ``new``, ``skipped: other machine`` (speed/memory across machines),
    ``skipped: protocol differs`` or ``info`` (uncertainty figures such as KID-std).
    """
    policy = policy or Policy()
    b, h = (_summary(df if "protocol" in df.columns else df.assign(protocol=[_protocol_key(r) for r in df.to_dict("records")]))
            for df in (base, head))
    j = b.merge(h, on=_KEYS, how="outer", suffixes=("_base", "_head"), indicator=True, sort=False)
    rows = []
    for r in j.to_dict("records"):
        rule = policy.rule(r["metric"])
        out = {k: r[k] for k in _KEYS}
        out.update(base=r["mean_base"], head=r["mean_head"], delta=r["mean_head"] - r["mean_base"],
                   tolerance=np.nan, direction="higher" if rule.higher_is_better else "lower")
        if r["_merge"] == "left_only":
            out["status"] = "missing"
        elif r["_merge"] == "right_only":
            out["status"] = "new"
        elif R.metric_kind(r["metric"]) == "uncertainty":
            out["status"] = "info"
        elif R.metric_kind(r["metric"]) in ("speed", "memory") and not same_machine:
            out["status"] = "skipped: other machine"
        elif r["protocol_base"] != r["protocol_head"]:
            out["status"] = "skipped: protocol differs"
        else:
            noise = np.sqrt(r["std_base"] ** 2 / r["k_base"] + r["std_head"] ** 2 / r["k_head"])
            tol = max(rule.abs, rule.rel * abs(r["mean_base"]), rule.sigmas * noise)
            worse = -out["delta"] if rule.higher_is_better else out["delta"]
            out["tolerance"] = tol
            out["status"] = "regression" if worse > tol else ("improved" if -worse > tol else "ok")
        rows.append(out)
    return pd.DataFrame(rows, columns=_KEYS + ["base", "head", "delta", "tolerance", "direction", "status"])


def failures(table: pd.DataFrame, policy: Policy | None = None) -> pd.DataFrame:
    """Rows that fail the gate: regressions, and missing measurements when the policy says so."""
    policy = policy or Policy()
    bad = table["status"].eq("regression") | (table["status"].eq("missing") & policy.fail_on_missing)
    return table[bad]


def load_side(spec: str, db: str | Path | None) -> tuple[str, str | None, pd.DataFrame]:
    """A compare operand: a run id in the history ``db``, a ``results.csv``, or a run folder.

    Returns (label, machine fingerprint or None when unknown, measurements).
    """
    p = Path(spec)
    if p.is_dir() or p.suffix == ".csv":
        csv = p / "results.csv" if p.is_dir() else p
        df = R.read(csv)
        info = csv.parent / "run.json"
        machine = None
        if info.is_file():
            import json

            machine = json.loads(info.read_text()).get("machine")
        return str(p), machine, df
    if db is None:
        raise EvalkitError(f"{spec!r} is neither a results.csv nor a run folder; pass --db to look it up as a run id")
    info, m = load_run(db, spec)
    return spec, info.machine, m


@dataclass(frozen=True)
class Gate:
    """The verdict of a regression gate: the compare table and the rows that fail it."""

    base: str
    head: str
    same_machine: bool
    table: pd.DataFrame
    failures: pd.DataFrame

    @property
    def regressions(self) -> int:
        return int(len(self.failures))

    def summary(self) -> str:
        """One line naming the first failing rows (for the ``regression:`` message)."""
        what = ", ".join(f"{r['variant']}/{r['dataset']}/{r['metric']} ({r['status']})"
                         for r in self.failures.to_dict("records")[:5])
        return f"{self.regressions} measurement(s) fail the gate: {what}"


def gate(base: str, head: str, *, policy: Policy | str | Path | None = None, db: str | Path | None = None) -> Gate:
    """Compare ``head`` against ``base`` (run ids in ``db``, results.csv files or run folders)
    under ``policy`` (a :class:`Policy`, a TOML file, or the default policy): the one gate
    behind ``evalkit report compare`` and a run's ``report.baseline``."""
    if not isinstance(policy, Policy):
        policy = Policy.load(policy) if policy else Policy()
    base_label, base_machine, b = load_side(str(base), db)
    head_label, head_machine, h = load_side(str(head), db)
    same_machine = base_machine is not None and base_machine == head_machine
    table = compare(b, h, policy, same_machine=same_machine)
    return Gate(base_label, head_label, same_machine, table, failures(table, policy))


def format_table(table: pd.DataFrame) -> str:
    """Plain-text table of changes for the terminal."""
    def num(v, metric):
        return "—" if pd.isna(v) else (f"{v:.4e}" if abs(v) >= 1e6 else f"{v:.{max(R.decimals(metric), 2) + 1}f}")

    lines = [f"{'variant':<18} {'dataset':<12} {'metric':<18} {'base':>12} {'head':>12} {'delta':>12} {'tol':>10}  status"]
    for r in table.to_dict("records"):
        m = r["metric"]
        lines.append(f"{r['variant']:<18} {r['dataset']:<12} {m + ' ' + ('↑' if r['direction'] == 'higher' else '↓'):<18} "
                     f"{num(r['base'], m):>12} {num(r['head'], m):>12} {num(r['delta'], m):>12} "
                     f"{num(r['tolerance'], m):>10}  {r['status']}")
    return "\n".join(lines)
