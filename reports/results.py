"""The long results table: one number a row, every number with its protocol.

Columns, in order (``docs/contracts.md``)::

    run_id, method, variant, dataset, split, metric, value, n, seed,
    resolution, resize, image_format, backbone, weights_sha256, n_images,
    library_versions, evalkit_version, comparable

Everything in ``reports/`` is a view of this table. Metric names are the papers'
(``FID``, ``SWD``, ``LPIPS-diversity``, ...); :data:`HIGHER_IS_BETTER` gives the
direction of each, :data:`DECIMALS` the rounding used wherever a number is displayed.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from evalkit.errors import EvalkitError

KEY_COLUMNS = ["run_id", "method", "variant", "dataset", "split", "metric", "value", "n", "seed"]
PROTOCOL_COLUMNS = [
    "resolution", "resize", "image_format", "backbone", "weights_sha256", "n_images",
    "library_versions", "evalkit_version", "comparable",
]
COLUMNS = KEY_COLUMNS + PROTOCOL_COLUMNS

_BOOL = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}
_INT_COLUMNS = ("n", "seed", "resolution", "n_images")
_STR_COLUMNS = ("run_id", "method", "variant", "dataset", "split", "metric", "resize", "image_format",
                "backbone", "weights_sha256", "library_versions", "evalkit_version")

# Direction of every metric evalkit reports (True: higher is better).
HIGHER_IS_BETTER: dict[str, bool] = {
    "FID": False,
    "KID": False,
    "SWD": False,
    "LPIPS-diversity": True,
    "LPIPS-gt": False,
    "semantic-relu4_2": True,
    "semantic-relu5_2": True,
    "style-mean": True,
    "style-std": True,
    "PSNR": True,
    "SSIM": True,
    "KID-std": False,
}
# Numbers that describe the uncertainty of another one (KID's std over subsets): stored,
# shown nowhere as a ranking column, never gated.
UNCERTAINTY = frozenset({"KID-std"})
# Rounding used for display (leaderboards, paper tables, compare tables).
DECIMALS: dict[str, int] = {
    "FID": 2, "KID": 4, "SWD": 2, "LPIPS-diversity": 3, "LPIPS-gt": 3,
    "semantic-relu4_2": 3, "semantic-relu5_2": 3, "style-mean": 3, "style-std": 3,
    "PSNR": 2, "SSIM": 3, "KID-std": 4,
}
# Speed and memory figures share the table; they are lower-is-better and machine-bound.
_SPEED_RE = re.compile(r"^(time|latency|throughput|peak-memory|memory)(-|$)")


def metric_kind(metric: str) -> str:
    """``"quality"`` for image metrics, ``"speed"`` for time, ``"memory"`` for memory figures,
    ``"uncertainty"`` for the spread of another metric."""
    if metric in UNCERTAINTY:
        return "uncertainty"
    if metric.startswith(("peak-memory", "memory")):
        return "memory"
    if metric.startswith(("time", "latency", "throughput")):
        return "speed"
    return "quality"


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric``; ``SWD@<res>`` follows ``SWD``; throughput is higher-better."""
    base = metric.split("@", 1)[0]
    if base in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[base]
    if metric.startswith("throughput"):
        return True
    if _SPEED_RE.match(metric):
        return False
    raise EvalkitError(f"unknown metric {metric!r}: add its direction to reports.results.HIGHER_IS_BETTER")


def decimals(metric: str) -> int:
    return DECIMALS.get(metric.split("@", 1)[0], 1 if metric_kind(metric) != "quality" else 3)


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


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate and write the long table as CSV, atomically."""
    df = validate(df, source=path)
    return write_atomic(path, df.to_csv(index=False, float_format="%.10g"))
