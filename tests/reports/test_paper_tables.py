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


def test_side_by_side_with_marks_and_no_delta_where_not_comparable():
    res = rows([("rabit", "shapes", "FID", 20.0, 0), ("rabit", "shapes", "FID", 22.0, 1),
                ("rabit", "shapes", "LPIPS-diversity", 0.5, 0), ("rabit", "shapes", "LPIPS-diversity", 0.5, 1)])
    t = P.compare(res, dataset_map={"shapes": "ADE20K"})
    fid = t[(t["paper"] == "RABIT") & (t["method"] == "RABIT") & (t["metric"] == "FID")].iloc[0]
    assert fid["paper_value"] == 24.35 and math.isclose(fid["ours"], 21.0)
    assert fid["marks"] == "data shapes≠ADE20K, n 8≠2000, protocol clean≠rabit2022, random backbone"
    assert math.isnan(fid["delta"]) and fid["ours_better"] is None  # no Δ against a paper number: not comparable
    assert fid["seeds"] == 2
    assert set(t["method"]) == {"RABIT"}  # only_ours keeps rows that have an evalkit number
    md = P.to_markdown(t)
    assert "| 24.35 | 21.00 | n/c |" in md and "⚠ not comparable: data shapes≠ADE20K, n 8≠2000" in md
    html = P.to_html(t)
    assert 'color:#777">n/c' in html and "#1a7f37" not in html


def test_not_comparable_names_the_protocol_and_n_differences():
    """The mark names each differing field with ours≠paper's, the paper's preset being its own
    (RABIT → rabit2022, UNITE → unite2021) and n the paper's test split (ADE20K: 2000)."""
    from evalkit.protocols import presets

    assert set(P.PAPER_PROTOCOL.values()) <= set(presets.names())
    res = rows([("unite", "ade20k", "FID", 20.0, 0), ("rabit", "ade20k", "FID", 20.0, 0)], weights="a" * 64, n=48,
               protocol="unite2021")
    t = P.compare(res).set_index(["paper", "method"])
    assert t.loc[("UNITE", "UNITE"), "marks"] == "n 48≠2000"  # UNITE's own preset: only n differs
    assert t.loc[("RABIT", "RABIT"), "marks"] == "n 48≠2000, protocol unite2021≠rabit2022"
    assert t["delta"].isna().all()
    row = next(ln for ln in P.to_markdown(t.reset_index()).splitlines() if "| RABIT | Table 1 | ADE20K | RABIT |" in ln)
    assert "⚠ not comparable: n 48≠2000, protocol unite2021≠rabit2022 |" in row and "| n/c |" in row


def test_direction_of_a_comparable_delta():
    res = rows([("rabit", "ade20k", "FID", 20.0, 0), ("rabit", "ade20k", "LPIPS-diversity", 0.5, 0)],
               weights="a" * 64, n=2000, protocol="rabit2022")
    t = P.compare(res).query("paper == 'RABIT' and method == 'RABIT'").set_index("metric")
    assert t.loc["FID", "marks"] == "" and math.isclose(t.loc["FID", "delta"], 20.0 - 24.35)
    assert t.loc["FID", "ours_better"]  # lower FID is better
    assert not t.loc["LPIPS", "ours_better"]  # 0.5 < 0.571 and LPIPS diversity is higher-better


def test_comparable_row_keeps_its_green_and_red_verdict():
    res = rows([("unite", "ade20k", "FID", 20.0, 0), ("unite", "ade20k", "LPIPS-diversity", 0.5, 0)],
               weights="a" * 64, n=2000, protocol="unite2021")
    html = P.to_html(P.compare(res))
    assert 'color:#1a7f37">-5.15 ▲' in html  # UNITE ADE20K FID 25.15: lower is better


def test_marks_name_resolution_and_n():
    res = rows([("unite", "ade20k", "FID", 20.0, 0)], weights="a" * 64, n=2000, protocol="unite2021")
    res = pd.concat([res, rows([("unite", "ade20k", "PSNR", 20.0, 0)], weights="a" * 64, n=2000, protocol="unite2021")
                     .assign(backbone="none", resolution=64)])
    fid = P.compare(res).query("paper == 'UNITE' and metric == 'FID'").iloc[0]
    assert fid["marks"] == "res 64≠256 px"


def test_empty_selection_names_the_paper_datasets(tmp_path):
    from evalkit.errors import EvalkitError

    res = rows([("rabit", "mydata", "FID", 20.0, 0)])
    with pytest.raises(EvalkitError, match="paper datasets: ADE20K, CelebA-HQ \\(semantic\\)"):
        P.check_selection(res, {}, source=tmp_path / "r.csv")


def test_no_mark_for_a_matching_protocol():
    res = rows([("unite", "ade20k", "FID", 25.15, 0)], weights="a" * 64, n=2000, protocol="unite2021")
    t = P.compare(res)
    r = t[(t["paper"] == "UNITE") & (t["metric"] == "FID")].iloc[0]
    assert r["marks"] == "" and r["delta"] == 0.0
