"""The long results table: one number a row, every number with its protocol.

Columns, in order (``docs/contracts.md``)::

    run_id, method, variant, dataset, split, metric, value, n, seed,
    resolution, resize, image_format, backbone, weights_sha256, n_images,
    library_versions, evalkit_version, comparable

Everything in ``reports/`` is a view of this table. Metric names are the papers'
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
    "resolution", "resize", "image_format", "backbone", "weights_sha256", "n_images", "metric_seed",
    "library_versions", "evalkit_version", "comparable",
]
COLUMNS = KEY_COLUMNS + PROTOCOL_COLUMNS

_BOOL = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}
_INT_COLUMNS = ("n", "seed", "resolution", "n_images", "metric_seed")
_STR_COLUMNS = ("run_id", "method", "variant", "dataset", "split", "metric", "resize", "image_format",
                "backbone", "weights_sha256", "library_versions", "evalkit_version")

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
    """Turn the metric rows of ``evalkit.metrics`` into rows of the long table."""
    df = metric_rows.copy()
    df["run_id"], df["method"], df["dataset"], df["split"], df["seed"] = run_id, method, dataset, split, seed
    if variant is not None:
        df["variant"] = variant
    return validate(df, source=f"metric rows of {method}/{dataset}")


def read(path: str | Path) -> pd.DataFrame:
    """Read and validate ``results.csv``."""
    path = Path(path)
    if not path.is_file():
        raise EvalkitError(f"results table not found: {path} (run `evalkit run CONFIG` first)", path=path)
    try:
        df = pd.read_csv(path, dtype={"run_id": str, "weights_sha256": str, "library_versions": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise EvalkitError(f"cannot parse results table {path}: {err}", path=path) from err
    return validate(df, source=path)


def write(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write the long table as CSV, atomically."""
    df = validate(df, source=path)
    return write_atomic(path, df.to_csv(index=False, float_format="%.10g"))
