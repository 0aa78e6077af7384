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
from contextlib import contextmanager
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
# What a measurement's ``protocol`` key holds (later fields appended: an older key is a prefix).
_PROTOCOL_FIELDS = ("backbone", "weights_sha256", "resolution", "resize", "image_format", "real_resize",
                    "metric_variant", "protocol")


_TABLES = {"runs": {"run_id", "name", "git_commit", "dirty", "time", "machine", "config_hash", "evalkit_version"},
           "measurements": {"run_id", "method", "dataset", "split", "metric", "variant", "seed", "value", "n",
                            "comparable", "weights_sha256", "protocol"}}


def _not_history(path: Path, why: str) -> EvalkitError:
    return EvalkitError(f"{path}: not an evalkit history database ({why}); use the history.sqlite a run records "
                        "into (its report.history, default <out>/history.sqlite)", path=path)


def _schema_tables(con: sqlite3.Connection, path: Path) -> set[str]:
    """The evalkit tables ``con`` has: both, or none in an empty database; a database with
    other tables, or ours with other columns, is foreign (EvalkitError)."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return set()
    if not set(_TABLES) <= tables:
        shown = ", ".join(sorted(tables)[:5])
        raise _not_history(path, f"it holds the tables {shown}, not runs and measurements")
    for table, columns in _TABLES.items():
        have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            raise _not_history(path, f"table {table} lacks the columns {', '.join(sorted(columns - have))}")
    return set(_TABLES)


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a history database: WAL mode, foreign keys on.

    ``readonly`` (``report runs``, ``report compare``, a run's baseline check): the file must
    exist, is opened read-only and is never changed, not even by creating our tables in it.
    Otherwise (recording a run) a missing or empty database gets the schema. Either way a
    corrupt file, or a database of another program (other tables or columns), is one
    :class:`EvalkitError` line and is left untouched.
    """
    path = Path(path)
    if readonly and not path.is_file():
        raise EvalkitError(f"history database not found: {path} (runs record into it when they finish)", path=path)
    try:
        if readonly:
            from urllib.parse import quote

            con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=30)
        else:
            from evalkit.files import check_writable

            check_writable(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as err:
        raise _not_history(path, str(err)) from err
    try:
        con.execute("PRAGMA foreign_keys=ON")
        present = _schema_tables(con, path)
        if not readonly:
            con.execute("PRAGMA journal_mode=WAL")
            if not present:
                con.executescript(SCHEMA)
    except EvalkitError:
        con.close()
        raise
    except sqlite3.Error as err:
        con.close()
        raise _not_history(path, str(err)) from err
    return con


def _empty_runs() -> pd.DataFrame:
    return pd.DataFrame(columns=["run_id", "name", "git_commit", "dirty", "time", "machine", "config_hash",
                                 "evalkit_version"])


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
    return "|".join(str(row.get(f, "")) for f in _PROTOCOL_FIELDS)


def record(db: str | Path, info: RunInfo, results: pd.DataFrame) -> int:
    """Insert (or replace) a run and its measurements; returns the number of measurements."""
    results = R.validate(results)
    con = connect(db)
    try:
        with _writing(db), con:
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


@contextmanager
def _writing(db: str | Path):
    """A write the database refuses (read-only file system, disk full, locked) as one line."""
    try:
        yield
    except sqlite3.OperationalError as err:
        raise EvalkitError(f"cannot record into history {db}: {err}; use another report.history path",
                           path=db) from err


def runs(db: str | Path) -> pd.DataFrame:
    """The recorded runs, oldest first (read-only: the database is never changed)."""
    con = connect(db, readonly=True)
    try:
        if not _schema_tables(con, Path(db)):
            return _empty_runs()
        return pd.read_sql_query("SELECT * FROM runs ORDER BY time, rowid", con)
    except sqlite3.Error as err:
        raise _not_history(Path(db), str(err)) from err
    finally:
        con.close()


def run_ids(db: str | Path) -> list[str]:
    """Ids of the recorded runs, newest first; [] when ``db`` does not exist (read-only)."""
    if not Path(db).is_file():
        return []
    return list(runs(db)["run_id"])[::-1]


def load_run(db: str | Path, run_id: str) -> tuple[RunInfo, pd.DataFrame]:
    """A run's info and its measurements (``value`` per method/variant/dataset/split/metric/seed)."""
    con = connect(db, readonly=True)
    try:
        has_tables = bool(_schema_tables(con, Path(db)))
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone() if has_tables else None
        if row is None:
            known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY time DESC LIMIT 5")] if has_tables else []
            raise EvalkitError(f"run {run_id!r} not in history {db} (latest: {', '.join(known) or 'none'})", path=db)
        m = pd.read_sql_query("SELECT * FROM measurements WHERE run_id = ?", con, params=(run_id,))
    except sqlite3.Error as err:
        raise _not_history(Path(db), str(err)) from err
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
    def shipped(cls) -> "Policy":
        """The noise-aware policy evalkit ships (``reports/data/policy.toml``, the same rules
        as ``configs/policy.toml``): the gate's default when no policy is given."""
        from importlib import resources

        with resources.as_file(resources.files("evalkit.reports").joinpath("data/policy.toml")) as path:
            return cls.load(path)

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
# What must agree for two measurements to be compared (an empty value: not recorded, not compared).
_COMPARED = ("protocol", "n", "resolution", "resize", "real_resize", "weights_sha256", "backbone", "image_format",
             "metric_variant")
_FIELD_LABEL = {"weights_sha256": "weights", "image_format": "format", "real_resize": "real resize",
                "metric_variant": "metric variant", "protocol": "preset"}


def _with_protocol(df: pd.DataFrame) -> pd.DataFrame:
    """The compared protocol fields as columns: from the history's ``protocol`` key, or
    from a results table's own columns."""
    df = df.copy()
    # A history run holds the key joined in _PROTOCOL_FIELDS order in its ``protocol`` column (a
    # results table's ``protocol`` is the preset name, beside its own protocol columns).
    if "protocol" in df.columns and "backbone" not in df.columns:
        parts = df["protocol"].fillna("").astype(str).str.split("|")
        for i, f in enumerate(_PROTOCOL_FIELDS):
            df[f] = parts.map(lambda p, i=i: p[i] if i < len(p) else "")
    for f in _COMPARED:
        df[f] = df[f].fillna("").astype(str) if f in df.columns else ""
    return df


def _summary(m: pd.DataFrame) -> pd.DataFrame:
    g = _with_protocol(m).groupby(_KEYS, sort=False)
    return g.agg(mean=("value", lambda v: float(v.mean()) if v.notna().all() else np.nan),
                 std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0),
                 k=("value", "size"), **{f: (f, "first") for f in _COMPARED}).reset_index()


def _row_name(r: dict) -> str:
    """``variant/dataset/metric`` (an empty dataset left out)."""
    return "/".join(str(r[k]) for k in ("variant", "dataset", "metric") if str(r[k]))


def _short(field: str, value: str) -> str:
    return value[:12] if field == "weights_sha256" and len(value) == 64 else value


def protocol_differences(r: dict) -> list[str]:
    """``["n 48 → 8", ...]``: the compared fields on which base and head disagree."""
    out = []
    for f in _COMPARED:
        b, h = r[f + "_base"], r[f + "_head"]
        if b and h and b != h:
            out.append(f"{_FIELD_LABEL.get(f, f)} {_short(f, b)} → {_short(f, h)}")
    return out


def compare(base: pd.DataFrame, head: pd.DataFrame, policy: Policy | None = None, *,
            same_machine: bool, base_label: str = "base") -> pd.DataFrame:
    """Line up two runs' measurements; one row per (method, variant, dataset, split, metric).

    ``status`` is one of ``ok``, ``improved``, ``regression``, ``missing`` (in base, not
    in head), ``new``, ``failed: no value in head`` (NaN or empty: a broken evaluation
    never passes), ``skipped: other machine`` (speed/memory across machines),
    ``skipped: protocol differs (n 48 → 8, ...)`` (evaluation preset, n, resolution, resize,
    weights, backbone, image format or metric variant differ: a protocol change is never
    called a regression; numbers of two presets, ``preset clean → unite2021``, never compare)
    or ``info`` (uncertainty figures such as KID-std). A base without a value (NaN or empty)
    is an :class:`EvalkitError`: it cannot anchor a gate. ``policy`` defaults to
    :meth:`Policy.shipped`.
    """
    policy = policy or Policy.shipped()
    b, h = _summary(base), _summary(head)
    gated = b["metric"].map(R.metric_kind) != "uncertainty"
    broken = b[gated & b["mean"].isna()]
    if len(broken):
        what = ", ".join(_row_name(r) for r in broken.to_dict("records")[:5])
        raise EvalkitError(f"{base_label}: {len(broken)} base measurement(s) have no value (NaN or empty): {what}; "
                           "a base must be a complete run: re-run its evaluation or compare against another base")
    j = b.merge(h, on=_KEYS, how="outer", suffixes=("_base", "_head"), indicator=True, sort=False)
    rows = []
    for r in j.to_dict("records"):
        rule = policy.rule(r["metric"])
        out = {k: r[k] for k in _KEYS}
        out.update(base=r["mean_base"], head=r["mean_head"], delta=r["mean_head"] - r["mean_base"],
                   tolerance=np.nan, direction="higher" if rule.higher_is_better else "lower")
        kind = R.metric_kind(r["metric"])
        if r["_merge"] == "left_only":
            out["status"] = "missing"
        elif r["_merge"] == "right_only":
            out["status"] = "new"
        elif kind == "uncertainty":
            out["status"] = "info"
        elif kind in ("speed", "memory") and not same_machine:
            out["status"] = "skipped: other machine"
        elif diffs := protocol_differences(r):
            out["status"] = f"skipped: protocol differs ({', '.join(diffs)})"
        elif pd.isna(r["mean_head"]):
            out["status"] = "failed: no value in head"
        else:
            noise = np.sqrt(r["std_base"] ** 2 / r["k_base"] + r["std_head"] ** 2 / r["k_head"])
            tol = max(rule.abs, rule.rel * abs(r["mean_base"]), rule.sigmas * noise)
            worse = -out["delta"] if rule.higher_is_better else out["delta"]
            out["tolerance"] = tol
            out["status"] = "regression" if worse > tol else ("improved" if -worse > tol else "ok")
        rows.append(out)
    return pd.DataFrame(rows, columns=_KEYS + ["base", "head", "delta", "tolerance", "direction", "status"])


def failures(table: pd.DataFrame, policy: Policy | None = None) -> pd.DataFrame:
    """Rows that fail the gate: regressions, head measurements without a value, and missing
    measurements when the policy says so."""
    policy = policy or Policy.shipped()
    bad = (table["status"].eq("regression") | table["status"].str.startswith("failed")
           | (table["status"].eq("missing") & policy.fail_on_missing))
    return table[bad]


@dataclass(frozen=True)
class Side:
    """A compare operand: its label, machine fingerprint and config hash (None when
    unknown) and its measurements."""

    label: str
    machine: str | None
    config_hash: str | None
    measurements: pd.DataFrame


def load_side(spec: str, db: str | Path | None) -> Side:
    """A compare operand: a run id in the history ``db``, a results table (a run's
    ``results.csv`` or an ``evalkit evaluate --out`` CSV), or a run folder."""
    p = Path(spec)
    if p.is_dir() or p.suffix == ".csv":
        if p.is_dir() and not (p / "results.csv").is_file():
            raise EvalkitError(f"{p}: no results.csv in this folder; pass a run folder, a results table or a run id",
                               path=p)
        csv = p / "results.csv" if p.is_dir() else p
        df = R.read(csv)
        info = csv.parent / "run.json"
        machine = config = None
        if info.is_file():
            import json

            try:
                meta = json.loads(info.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise EvalkitError(f"{info}: unreadable run.json ({err}); restore it or compare the results.csv "
                                   "from another folder", path=info) from err
            machine, config = meta.get("machine"), meta.get("config_hash")
        return Side(str(p), machine, config, df)
    if "/" in spec:  # a path, not a run id
        raise EvalkitError(f"{spec}: no such folder or results table; pass a run folder, a results.csv or a run id "
                           "of the history (`evalkit report runs`)", path=p)
    if db is None:
        raise EvalkitError(f"{spec!r} is neither a results.csv nor a run folder; pass --db to look it up as a run id")
    info, m = load_run(db, spec)
    return Side(spec, info.machine, info.config_hash, m)


@dataclass(frozen=True)
class Gate:
    """The verdict of a regression gate: the compare table and the rows that fail it."""

    base: str
    head: str
    same_machine: bool
    table: pd.DataFrame
    failures: pd.DataFrame
    configs: tuple[str | None, str | None] = (None, None)  # config hashes of base and head

    @property
    def regressions(self) -> int:
        return int(len(self.failures))

    @property
    def compared(self) -> int:
        """Rows the gate judged (not skipped, not info, not new)."""
        s = self.table["status"]
        return int((s.isin(["ok", "improved", "regression", "missing"]) | s.str.startswith("failed")).sum())

    @property
    def skipped(self) -> int:
        return int(self.table["status"].str.startswith("skipped").sum())

    @property
    def configs_differ(self) -> bool:
        return None not in self.configs and self.configs[0] != self.configs[1]

    def lines(self) -> list[str]:
        """What the gate did, in words: compared, failed, skipped, and whether the configs differ."""
        out = [f"{self.regressions} of {self.compared} compared measurement(s) fail the gate; "
               f"{self.skipped} skipped (protocol or machine differs)"]
        if self.configs_differ:
            out.append(f"configs differ: base config {self.configs[0][:12]}, head config {self.configs[1][:12]}")
        return out

    def summary(self) -> str:
        """One line naming the failing rows (the first five, then how many more), for the
        ``regression:`` message."""
        rows = self.failures.to_dict("records")
        what = ", ".join(f"{_row_name(r)} ({r['status']})" for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        tail = "; configs differ" if self.configs_differ else ""
        return f"{self.regressions} of {self.compared} compared measurement(s) fail the gate: {what}{more}{tail}"


def gate(base: str, head: str, *, policy: Policy | str | Path | None = None, db: str | Path | None = None) -> Gate:
    """Compare ``head`` against ``base`` (run ids in ``db``, results.csv files or run folders)
    under ``policy`` (a :class:`Policy`, a TOML file, or by default :meth:`Policy.shipped`):
    the one gate behind ``evalkit report compare`` and a run's ``report.baseline``."""
    if not isinstance(policy, Policy):
        policy = Policy.load(policy) if policy else Policy.shipped()
    b = load_side(str(base), db)
    h = load_side(str(head), db)
    same_machine = b.machine is not None and b.machine == h.machine
    table = compare(b.measurements, h.measurements, policy, same_machine=same_machine, base_label=b.label)
    return Gate(b.label, h.label, same_machine, table, failures(table, policy), (b.config_hash, h.config_hash))


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
