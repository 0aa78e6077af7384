import math
from pathlib import Path

import pandas as pd
import pytest

from evalkit.reports import paper_tables as P
from report_helpers import rows

SHARED_TABLE = Path(__file__).resolve().parents[3] / "shared" / "paper_tables" / "paper_tables.csv"


def test_transcription_matches_the_shared_table():
    ours = P.load()
    if not SHARED_TABLE.is_file():
        pytest.skip(f"shared paper table not found at {SHARED_TABLE}")
    shared = pd.read_csv(SHARED_TABLE)
    pd.testing.assert_frame_equal(ours[P.COLUMNS], shared)


def test_every_paper_metric_maps_to_an_evalkit_metric_or_is_user_study():
    t = P.load()
    unmapped = set(t.loc[t["ek_metric"].isna(), "metric"])
    assert unmapped == {"user study %"}
    lp = t[t["metric"] == "LPIPS"]
    assert set(lp.loc[lp["task"] == "manipulation", "ek_metric"]) == {"LPIPS-gt"}
    assert not lp.loc[lp["task"] == "manipulation", "higher_is_better"].any()


def test_side_by_side_with_marks_and_direction():
    res = rows([("rabit", "shapes", "FID", 20.0, 0), ("rabit", "shapes", "FID", 22.0, 1),
                ("rabit", "shapes", "LPIPS-diversity", 0.5, 0), ("rabit", "shapes", "LPIPS-diversity", 0.5, 1)])
    t = P.compare(res, dataset_map={"shapes": "ADE20K"})
    fid = t[(t["paper"] == "RABIT") & (t["method"] == "RABIT") & (t["metric"] == "FID")].iloc[0]
    assert fid["paper_value"] == 24.35 and math.isclose(fid["ours"], 21.0)
    assert math.isclose(fid["delta"], 21.0 - 24.35) and fid["ours_better"]  # lower FID is better
    assert "random backbone" in fid["marks"] and "data: shapes≠ADE20K" in fid["marks"]
    assert fid["seeds"] == 2
    lp = t[(t["paper"] == "RABIT") & (t["method"] == "RABIT") & (t["metric"] == "LPIPS")].iloc[0]
    assert not lp["ours_better"]  # 0.5 < 0.571 and LPIPS diversity is higher-better
    assert set(t["method"]) == {"RABIT"}  # only_ours keeps rows that have an evalkit number
    assert "n=8, not the full test set" in fid["marks"]
    md = P.to_markdown(t)
    assert "| 24.35 | 21.00 | -3.35 (n/c) |" in md  # a marked row gets no ▲/▼ verdict
    html = P.to_html(t)
    assert 'color:#777">-3.35 (n/c)' in html and "#1a7f37" not in html


def test_comparable_row_keeps_its_green_and_red_verdict():
    res = rows([("unite", "ade20k", "FID", 20.0, 0), ("unite", "ade20k", "LPIPS-diversity", 0.5, 0)],
               weights="a" * 64, n=2000)
    html = P.to_html(P.compare(res))
    assert 'color:#1a7f37">-5.15 ▲' in html  # UNITE ADE20K FID 25.15: lower is better


def test_marks_name_resolution_and_n():
    res = rows([("unite", "ade20k", "FID", 20.0, 0)], weights="a" * 64, n=2000)
    res = pd.concat([res, rows([("unite", "ade20k", "PSNR", 20.0, 0)], weights="a" * 64, n=2000)
                     .assign(backbone="none", resolution=64)])
    fid = P.compare(res).query("paper == 'UNITE' and metric == 'FID'").iloc[0]
    assert fid["marks"] == "res 64≠256 px"


def test_empty_selection_names_the_paper_datasets(tmp_path):
    from evalkit.errors import EvalkitError

    res = rows([("rabit", "mydata", "FID", 20.0, 0)])
    with pytest.raises(EvalkitError, match="paper datasets: ADE20K, CelebA-HQ \\(semantic\\)"):
        P.check_selection(res, {}, source=tmp_path / "r.csv")


def test_no_mark_for_a_matching_protocol():
    res = rows([("unite", "ade20k", "FID", 25.15, 0)], weights="a" * 64, n=2000)
    t = P.compare(res)
    r = t[(t["paper"] == "UNITE") & (t["metric"] == "FID")].iloc[0]
    assert r["marks"] == "" and r["delta"] == 0.0
