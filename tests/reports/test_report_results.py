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


def test_an_older_evaluate_csv_is_read_with_its_metric_variant_and_run_defaults(tmp_path):
    """`evaluate --out` used to write method, dataset + metric rows (variant = the metric's);
    such a file is still a results table: run id from the file name, split test, seed 0."""
    old = rows([("rabit", "shapes", "FID", 12.5, 0)]).drop(columns=["run_id", "split", "seed", "metric_variant"])
    old["variant"] = "clean"
    old.to_csv(tmp_path / "mine.csv", index=False)
    back = R.read(tmp_path / "mine.csv")
    r = back.iloc[0]
    assert (r["run_id"], r["split"], r["seed"], r["variant"], r["metric_variant"]) == ("mine", "test", 0, "rabit", "clean")
    named = R.read(tmp_path / "mine.csv", method="unite/seace+uot", dataset="ade20k").iloc[0]
    assert (named["method"], named["variant"], named["dataset"]) == ("unite", "unite/seace+uot", "ade20k")
    two = rows([("a", "shapes", "FID", 1.0, 0), ("b", "shapes", "FID", 2.0, 0)])
    R.write(two, tmp_path / "two.csv")
    with pytest.raises(EvalkitError, match="holds several methods \\(a, b\\)"):
        R.read(tmp_path / "two.csv", method="x")


def test_an_empty_dataset_column_reads_back_as_empty(tmp_path):
    df = rows([("rabit", "", "FID", 12.5, 0)])
    R.write(df, tmp_path / "r.csv")
    assert R.read(tmp_path / "r.csv")["dataset"].tolist() == [""]
