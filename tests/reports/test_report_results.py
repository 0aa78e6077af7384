import pandas as pd
import pytest

from evalkit.errors import EvalkitError
from evalkit.reports import results as R
from report_helpers import rows


def test_round_trip_keeps_schema_and_types(tmp_path):
    df = rows([("rabit", "shapes", "FID", 12.5, 0), ("rabit", "shapes", "SWD@16", 3.25, 1)])
    path = R.write(df, tmp_path / "results.csv")
    back = R.read(path)
    assert list(back.columns) == R.COLUMNS
    pd.testing.assert_frame_equal(back, R.validate(df))
    assert back["comparable"].dtype == bool and back["seed"].dtype == "int64"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left behind


def test_every_problem_is_named(tmp_path):
    df = rows([("rabit", "shapes", "FID", 1.0, 0), ("rabit", "shapes", "FID", 2.0, 0)])
    df = df.drop(columns=["backbone"])
    with pytest.raises(EvalkitError, match="missing column.*backbone"):
        R.validate(df)
    df = rows([("rabit", "shapes", "FID", 1.0, 0), ("rabit", "shapes", "FID", 2.0, 0)])
    df["seed"] = [0.5, 1]
    df["value"] = [1.0, "abc"]
    with pytest.raises(EvalkitError) as err:
        R.validate(df)
    assert "seed must hold integers" in str(err.value) and "non-numeric value" in str(err.value)
    with pytest.raises(EvalkitError, match="duplicate"):
        R.validate(rows([("rabit", "shapes", "FID", 1.0, 0), ("rabit", "shapes", "FID", 2.0, 0)]))
    with pytest.raises(EvalkitError, match="unknown metric 'Foo'"):
        R.validate(rows([("rabit", "shapes", "Foo", 1.0, 0)]))


def test_directions_follow_the_papers():
    assert not R.higher_is_better("FID") and not R.higher_is_better("SWD@32")
    assert R.higher_is_better("LPIPS-diversity") and not R.higher_is_better("LPIPS-gt")
    assert R.higher_is_better("SSIM") and R.arrow("PSNR") == "↑" and R.arrow("KID") == "↓"
    assert R.metric_kind("peak-memory-MiB") == "memory" and R.metric_kind("time-s") == "speed"
    assert not R.higher_is_better("time-s")


def test_read_reports_missing_file(tmp_path):
    with pytest.raises(EvalkitError, match="not found"):
        R.read(tmp_path / "nope.csv")
