"""The long results table: one number a row, every number with its protocol.

Columns, in order (``docs/contracts.md``)::

    run_id, method, variant, dataset, split, metric, value, n, seed,
    protocol, metric_variant, resolution, resize, real_resize, image_format, backbone, weights_sha256,
    n_images, metric_seed, library_versions, evalkit_version, comparable

``protocol`` is the evaluation preset (``clean``, ``cocosnet2020``, ``unite2021``,
``rabit2022``: :mod:`evalkit.protocols`; ``clean`` in tables written before it was recorded).
``variant`` is the method's variant (``rabit/ras``); ``metric_variant`` how the metric was
computed (``clean``/``legacy`` FID, ``pggan`` SWD, ...; empty in tables written before it
was recorded). Everything in ``reports/`` is a view of this table. The CSV that
``evalkit evaluate --out`` writes is such a table; :func:`read` also accepts one without
``run_id``/``split``/``seed`` (defaults: the file's stem, ``test``, 0). Metric names are the papers'
(``FID``, ``SWD``, ``LPIPS-diversity``, ...). The direction of each, the rounding used
wherever it is displayed and whether it is an uncertainty come from the metric registry
(:mod:`evalkit.metrics.registry`); speed and memory figures (``time-*``, ``peak-memory-*``)
are machine measurements, lower is better except ``throughput-*``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from evalkit.errors import EvalkitError
from evalkit.files import write_atomic

KEY_COLUMNS = ["run_id", "method", "variant", "dataset", "split", "metric", "value", "n", "seed"]
PROTOCOL_COLUMNS = [
    "protocol", "metric_variant", "resolution", "resize", "real_resize", "image_format", "backbone", "weights_sha256", "n_images",
    "metric_seed", "library_versions", "evalkit_version", "comparable",
]
COLUMNS = KEY_COLUMNS + PROTOCOL_COLUMNS
# Columns added after the first tables were written, with the value an older table implies.
LATER_COLUMNS = {"metric_variant": "", "real_resize": "none", "protocol": "clean"}

_BOOL = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}
_INT_COLUMNS = ("n", "seed", "resolution", "n_images", "metric_seed")
_STR_COLUMNS = ("run_id", "method", "variant", "dataset", "split", "metric", "protocol", "metric_variant", "resize",
                "real_resize", "image_format", "backbone", "weights_sha256", "library_versions", "evalkit_version")

# Speed and memory figures share the table; they are lower-is-better and machine-bound.
_SPEED_RE = re.compile(r"^(time|latency|throughput|peak-memory|memory)(-|$)")


def _row_spec(metric: str):
    from evalkit.metrics.registry import row_spec

    return row_spec(metric)


def metric_kind(metric: str) -> str:
    """``"quality"`` for image metrics, ``"speed"`` for time, ``"memory"`` for memory figures,
    ``"uncertainty"`` for the spread of another metric."""
    spec = _row_spec(metric)
    if spec is not None and spec.uncertainty:
        return "uncertainty"
    if metric.startswith(("peak-memory", "memory")):
        return "memory"
    if metric.startswith(("time", "latency", "throughput")):
        return "speed"
    return "quality"


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric``; ``SWD@<res>`` follows ``SWD``; throughput is higher-better."""
    spec = _row_spec(metric)
    if spec is not None:
        return spec.higher_is_better
    if metric.startswith("throughput"):
        return True
    if _SPEED_RE.match(metric):
        return False
    raise EvalkitError(f"unknown metric {metric!r}: no registered metric family writes this row "
                       "(evalkit.metrics.registry.register_metric)")


def decimals(metric: str) -> int:
    spec = _row_spec(metric)
    return spec.decimals if spec is not None else (1 if metric_kind(metric) != "quality" else 3)


def format_value(value: float, metric: str) -> str:
    """A number as displayed: the metric's decimals, scientific notation beyond 1e6
    (random-initialised backbones give FIDs of 1e20 and more)."""
    if abs(value) >= 1e6:
        return f"{value:.3e}"
    return f"{value:.{decimals(metric)}f}"


def arrow(metric: str) -> str:
    """``↑`` when higher is better, ``↓`` otherwise (for table headers)."""
    return "↑" if higher_is_better(metric) else "↓"


def validate(df: pd.DataFrame, *, source: str | Path = "results table") -> pd.DataFrame:
    """Check the schema of a long results table and return it with canonical dtypes.

    Raises :class:`EvalkitError` naming every missing column, wrong type or missing value.
    """
    problems = []
    df = df.assign(**{c: df[c].astype(object).fillna(d) if c in df.columns else d for c, d in LATER_COLUMNS.items()})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if not problems:
        df = df[COLUMNS].copy()
        value = pd.to_numeric(df["value"], errors="coerce")
        bad = df.index[value.isna() & df["value"].notna()]
        if len(bad):
            problems.append(f"non-numeric value in row(s) {', '.join(str(i) for i in bad[:5])}")
        df["value"] = value.astype(float)
        for col in _INT_COLUMNS:
            num = pd.to_numeric(df[col], errors="coerce")
            if num.isna().any() or (num != num.round()).any():
                rows = df.index[num.isna() | (num != num.round())]
                problems.append(f"column {col} must hold integers (row(s) {', '.join(str(i) for i in rows[:5])})")
            else:
                df[col] = num.astype("int64")
        for col in _STR_COLUMNS:
            if df[col].isna().any():
                problems.append(f"column {col} has empty cells")
            df[col] = df[col].astype(str)
        comparable = df["comparable"].map(_BOOL.get)
        if comparable.isna().any():
            problems.append("column comparable must hold True/False")
        else:
            df["comparable"] = comparable.astype(bool)
        for metric in df["metric"].unique():
            try:
                higher_is_better(metric)
            except EvalkitError as err:
                problems.append(str(err))
        dup = df.duplicated(["run_id", "method", "variant", "dataset", "split", "metric", "seed"], keep=False)
        if dup.any():
            problems.append(f"{int(dup.sum())} duplicate rows for the same run/variant/dataset/split/metric/seed")
    if problems:
        raise EvalkitError(f"{source}: invalid results table: {'; '.join(problems)}")
    return df.reset_index(drop=True)


def make_rows(metric_rows: pd.DataFrame, *, run_id: str, method: str, dataset: str, split: str, seed: int,
              variant: str | None = None) -> pd.DataFrame:
    """Turn the metric rows of ``evalkit.metrics`` into rows of the long table: their
    ``variant`` (how the metric was computed) becomes ``metric_variant`` and ``variant``
    names the method's variant (default: ``method``)."""
    df = metric_rows.copy()
    if "metric_variant" not in df.columns:
        df["metric_variant"] = df["variant"] if "variant" in df.columns else ""
    df["run_id"], df["method"], df["dataset"], df["split"], df["seed"] = run_id, method, dataset, split, seed
    df["variant"] = method if variant is None else variant
    return validate(df, source=f"metric rows of {method}/{dataset}")


def fill(df: pd.DataFrame, source: str | Path, *, method: str | None = None, dataset: str | None = None,
         run_id: str | None = None) -> pd.DataFrame:
    """Complete a table that lacks the run columns (an ``evalkit evaluate --out`` CSV):
    ``run_id`` (default ``run_id``, else the file's stem), ``split`` (``test``), ``seed`` (0).
    A table without ``run_id`` and ``metric_variant`` is the older ``evaluate`` CSV, whose
    ``variant`` was the metric's: it moves to ``metric_variant`` and the method names the
    variant. ``method`` / ``dataset`` fill (or replace) those columns of a one-method table."""
    df = df.copy()
    if "run_id" not in df.columns:
        if "metric_variant" not in df.columns and "variant" in df.columns and "method" in df.columns:
            df["metric_variant"], df["variant"] = df["variant"], df["method"]
        df["run_id"] = run_id or Path(source).stem
    if "dataset" in df.columns:  # `evaluate` without --dataset writes an empty one (read back as NaN)
        df["dataset"] = df["dataset"].astype(object).fillna("")
    df["split"] = df["split"] if "split" in df.columns else "test"
    df["seed"] = df["seed"] if "seed" in df.columns else 0
    if method is not None:
        variants = sorted(set(df["variant"].dropna().astype(str))) if "variant" in df.columns else []
        if len(variants) > 1:
            raise EvalkitError(f"--method {method}: {source} holds several methods ({', '.join(variants)}); "
                               "--method names the method of a one-method table (an `evalkit evaluate` CSV)",
                               path=source)
        df["method"], df["variant"] = method.split("/")[0], method
    if dataset is not None:
        df["dataset"] = dataset
    return df


def read(path: str | Path, *, method: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Read and validate a results table: a run's ``results.csv`` or an ``evalkit evaluate
    --out`` CSV (see :func:`fill` for ``method`` / ``dataset`` and the defaults)."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"results table not found: {path} (run `evalkit run CONFIG` or "
                           "`evalkit evaluate ... --out FILE.csv` first)", path=path)
    try:
        df = pd.read_csv(path, dtype={"run_id": str, "weights_sha256": str, "library_versions": str,
                                      "metric_variant": str, "protocol": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise EvalkitError(f"cannot parse results table {path}: {err}", path=path) from err
    return validate(fill(df, path, method=method, dataset=dataset), source=path)


def write(df: pd.DataFrame, path: str | Path, *, float_format: str | None = None) -> Path:
    """Validate and write the long table as CSV, atomically, at full precision by default (every
    writer of results -- ``evalkit run``, ``evaluate --out`` -- writes the same digits, so the same
    outputs give equal values in every table)."""
    df = validate(df, source=path)
    return write_atomic(path, df.to_csv(index=False, float_format=float_format))
