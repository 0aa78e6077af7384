"""Claims that transfer: the orderings the paper tables assert, checked on a run.

The orderings of a small hand-written paper table are the hand-checked list; the verdicts on
synthetic per-item values are those of a paired bootstrap written out here in NumPy; the
CLI drives a tiny run (two trained variants the papers compare, one step each) and a bad
run path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.metrics.registry import PerItem
from evalkit.reports import claims_papers as CP
from evalkit.reports import paper_tables as P
from report_helpers import rows

HAND_TABLE = """paper,table,task,dataset,method,metric,value,higher_is_better
RABIT,Table 1,translation,ADE20K,RABIT,FID,24.0,False
RABIT,Table 1,translation,ADE20K,CoCosNet,FID,26.0,False
RABIT,Table 1,translation,ADE20K,SPADE,FID,24.0,False
RABIT,Table 1,translation,ADE20K,Pix2pixHD,FID,80.0,False
RABIT,Table 1,translation,ADE20K,RABIT,LPIPS,0.5,True
RABIT,Table 1,translation,ADE20K,CoCosNet,LPIPS,0.6,True
RABIT,Table 2,manipulation,ADE20K,RABIT,PSNR,20.0,True
RABIT,Table 2,manipulation,ADE20K,CoCosNet,PSNR,19.0,True
UNITE,Table 3,ablation,CelebA-HQ (edge),SPADE+OT,FID,30.0,False
UNITE,Table 3,ablation,CelebA-HQ (edge),SPADE+UOT,FID,28.0,False
UNITE,Table 3,ablation,CelebA-HQ (edge),SPADE+OT,user study %,5.0,True
UNITE,Table 3,ablation,CelebA-HQ (edge),SPADE+UOT,user study %,10.0,True
"""


def _table(tmp_path: Path, text: str = HAND_TABLE) -> pd.DataFrame:
    path = tmp_path / "paper.csv"
    path.write_text(text, encoding="utf-8")
    return P.load(path)


def test_orderings_of_a_hand_written_table(tmp_path):
    got = CP.orderings(_table(tmp_path))
    # by hand: ties (RABIT = SPADE on FID) and unmapped methods (Pix2pixHD) assert nothing,
    # the manipulation table is not a translation ordering, LPIPS diversity is higher-better.
    assert list(got["claim"]) == [
        "RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)",
        "SPADE < CoCosNet on FID (ADE20K, RABIT Tab. 1)",
        "CoCosNet > RABIT on LPIPS (ADE20K, RABIT Tab. 1)",
        "SPADE+UOT < SPADE+OT on FID (CelebA-HQ (edge), UNITE Tab. 3)",
        "SPADE+UOT > SPADE+OT on user study % (CelebA-HQ (edge), UNITE Tab. 3)",
    ]
    assert list(zip(got["better_variant"], got["worse_variant"])) == [
        ("rabit", "cocosnet"), ("spade-vae", "cocosnet"), ("cocosnet", "rabit"),
        ("unite/spade+uot", "unite/spade+ot"), ("unite/spade+uot", "unite/spade+ot")]
    assert [m if isinstance(m, str) else None for m in got["ek_metric"]] == ["FID", "FID", "LPIPS-diversity", "FID", None]
    only = CP.orderings(_table(tmp_path), variants={"rabit", "cocosnet"})
    assert list(only["claim"]) == ["RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)",
                                   "CoCosNet > RABIT on LPIPS (ADE20K, RABIT Tab. 1)"]
    manip = CP.orderings(_table(tmp_path), tasks=("manipulation",))
    assert list(manip["claim"]) == ["RABIT > CoCosNet on PSNR (ADE20K, RABIT Tab. 2)"]


def test_the_shipped_table_orders_rabit_tab1_ade20k_fid_as_published():
    """RABIT Tab. 1, ADE20K FID: RABIT 24.35, CoCosNet 26.40, SPADE 33.90 (the paper)."""
    got = CP.orderings()
    sel = got[(got["paper"] == "RABIT") & (got["table"] == "Table 1") & (got["paper_dataset"] == "ADE20K")
              & (got["metric"] == "FID")]
    assert set(sel["claim"]) == {"RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)",
                                 "RABIT < SPADE on FID (ADE20K, RABIT Tab. 1)",
                                 "CoCosNet < SPADE on FID (ADE20K, RABIT Tab. 1)"}
    assert not (got["task"] == "manipulation").any()


N_ITEMS = 40


def _synthetic(seed: int) -> dict:
    """Per-item values at one seed. PSNR: rabit clearly above both others, cocosnet clearly below
    spade-vae. A set statistic against real features: rabit and spade-vae within noise of each
    other, cocosnet far off."""
    rng = np.random.default_rng(100 + seed)
    base = rng.normal(20.0, 3.0, N_ITEMS)
    psnr = {"spade-vae": base + rng.normal(0.0, 0.5, N_ITEMS), "rabit": base + 2.0 + rng.normal(0.0, 0.5, N_ITEMS)}
    psnr["cocosnet"] = psnr["rabit"] - 2.0 + rng.normal(0.0, 0.3, N_ITEMS) - 2.5
    real = rng.normal(0.0, 1.0, (N_ITEMS, 3))
    feats = {"rabit": real + rng.normal(0.0, 0.2, (N_ITEMS, 3)), "cocosnet": real + rng.normal(1.5, 0.2, (N_ITEMS, 3)),
             "spade-vae": real + rng.normal(0.0, 0.2, (N_ITEMS, 3))}
    return {"PSNR": psnr, "FID": feats, "real": real}


def _mean_distance(x, ref) -> float:  # a set statistic of (generated, real) features, lower is better
    return float(((x.mean(0) - ref.mean(0)) ** 2).sum())


def _independent(a, b, *, hib: bool, seed: int, ref=None, stat=None, n_boot: int = 1000) -> str:
    """The paired bootstrap written out: the same item draws for A, B and the reference."""
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    if stat is None:
        deltas = np.array([a[i].mean() - b[i].mean() for i in idx])
    else:
        deltas = np.array([stat(a[i], ref[i]) - stat(b[i], ref[i]) for i in idx])
    lo, hi = np.quantile(deltas, [0.025, 0.975])
    if (lo > 0) if hib else (hi < 0):
        return "holds"
    if (hi < 0) if hib else (lo > 0):
        return "reversed"
    return "not resolved"


def test_verdicts_agree_with_an_independent_paired_bootstrap(tmp_path):
    paper = _table(tmp_path, """paper,table,task,dataset,method,metric,value,higher_is_better
RABIT,Table 1,translation,ADE20K,RABIT,PSNR,25.0,True
RABIT,Table 1,translation,ADE20K,CoCosNet,PSNR,24.0,True
RABIT,Table 1,translation,ADE20K,SPADE,PSNR,20.0,True
RABIT,Table 1,translation,ADE20K,RABIT,FID,20.0,False
RABIT,Table 1,translation,ADE20K,CoCosNet,FID,21.0,False
RABIT,Table 1,translation,ADE20K,SPADE,FID,30.0,False
RABIT,Table 1,translation,ADE20K,RABIT,SWD,9.0,False
RABIT,Table 1,translation,ADE20K,CoCosNet,SWD,10.0,False
RABIT,Table 1,translation,ADE20K,RABIT,LPIPS,0.6,True
RABIT,Table 1,translation,ADE20K,CoCosNet,LPIPS,0.5,True
""")
    variants = ("rabit", "cocosnet", "spade-vae")
    results = rows([(v, "shapes", m, 1.0, s) for v in variants for m in ("PSNR", "FID", "SWD") for s in (0, 1)])
    data = {s: _synthetic(s) for s in (0, 1)}
    asked = []

    def per_items(seed):
        def per(dataset, variant, metric):
            asked.append(metric)
            d = data[seed]
            if metric == "FID":
                return PerItem(d["FID"][variant], reference=d["real"], statistic=_mean_distance)
            return PerItem(d[metric][variant])
        return per

    claims = CP.check(results, per_items, dataset_map={"shapes": "ADE20K"}, paper=paper)
    assert set(asked) == {"PSNR", "FID"}  # per-item values are asked only where the registry has them
    assert set(claims["seed"]) == {0, 1} and set(claims["dataset"]) == {"shapes"}
    seen = set()
    for r in claims.to_dict("records"):
        if r["ek_metric"] == "SWD":
            assert r["verdict"] == "not resolved (no per-item values)" and np.isnan(r["delta"])
            continue
        if r["ek_metric"] == "LPIPS-diversity":
            assert r["verdict"] == "not resolved (no LPIPS-diversity rows in this run)"
            continue
        d = data[r["seed"]]
        a, b = d[r["ek_metric"]][r["better_variant"]], d[r["ek_metric"]][r["worse_variant"]]
        if r["ek_metric"] == "FID":
            expected = _independent(a, b, hib=False, seed=r["seed"], ref=d["real"], stat=_mean_distance)
            assert r["delta"] == pytest.approx(_mean_distance(a, d["real"]) - _mean_distance(b, d["real"]), rel=1e-12)
        else:
            expected = _independent(a, b, hib=True, seed=r["seed"])
            assert r["delta"] == pytest.approx(a.mean() - b.mean(), rel=1e-12)
        assert r["verdict"] == expected, r["claim"]
        assert r["n_items"] == N_ITEMS and r["n_boot"] == 1000
        seen.add(expected)
    assert seen == {"holds", "reversed", "not resolved"}  # the synthetic data exercise every verdict
    md = CP.to_markdown(claims, [("run", "r1")])
    assert md.startswith("**Protocol** — run: r1") and "## RABIT Tab. 1" in md
    assert "| RABIT > SPADE on PSNR (ADE20K, RABIT Tab. 1) |" in md


def test_a_dataset_without_a_mapping_is_held_to_every_paper_dataset(tmp_path):
    paper = _table(tmp_path)
    assert CP.paper_datasets_for("shapes", {"shapes": "ADE20K"}, paper) == ["ADE20K"]
    assert CP.paper_datasets_for("ade20k", None, paper) == ["ADE20K"]
    assert CP.paper_datasets_for("shapes", None, paper) == ["ADE20K", "CelebA-HQ (edge)"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`evalkit run` of rabit and cocosnet (the papers compare them), one training step each, at 32 px."""
    root = tmp_path_factory.mktemp("claims_run")
    config = root / "claims.toml"
    config.write_text(f"""
name = "claims"
out = "{(root / 'runs').as_posix()}"
seeds = [0]

[[datasets]]
name = "shapes"
size = 32
n_train = 4
n_test = 6
options = {{ exemplars_per_query = 2 }}

[[variants]]
name = "rabit"
steps = 1
batch_size = 2

[[variants]]
name = "cocosnet"
steps = 1
batch_size = 2

[evaluation]
metrics = ["fid", "psnr"]
weights = "random"

[report]
formats = ["md"]
examples = 0
paper_datasets = {{ shapes = "ADE20K" }}
""", encoding="utf-8")
    r = CliRunner().invoke(app, ["run", str(config), "--no-progress"])
    assert r.exit_code == 0, r.output
    return root / "runs" / "claims"


def test_cli_claims_on_a_tiny_run(tiny_run, tmp_path):
    report = tiny_run / "report"
    assert (report / "claims_vs_papers.md").is_file() and (report / "claims_vs_papers.csv").is_file()  # the run wrote it
    r = CliRunner().invoke(app, ["report", "claims", str(tiny_run), "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    claims = pd.read_csv(tmp_path / "claims_vs_papers.csv")
    assert len(data["claims"]) == len(claims) > 0
    assert "RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)" in set(claims["claim"])
    assert set(claims["better_variant"]) | set(claims["worse_variant"]) <= {"rabit", "cocosnet"}
    fid = claims[claims["ek_metric"] == "FID"].iloc[0]
    assert fid["verdict"] in ("holds", "reversed", "not resolved") and fid["n_items"] == 6
    assert fid["ci_low"] <= fid["delta"] <= fid["ci_high"] or fid["verdict"] == "not resolved"
    swd = claims[claims["ek_metric"] == "SWD"]
    assert len(swd) and set(swd["verdict"]) == {"not resolved (no SWD rows in this run)"}
    md = (tmp_path / "claims_vs_papers.md").read_text(encoding="utf-8")
    info = json.loads((tiny_run / "run.json").read_text())
    assert md.startswith("**Protocol** — run: " + info["run_id"]) and "## RABIT Tab. 1" in md
    # the run's own report holds the same verdicts (same per-item values, same seed)
    saved = pd.read_csv(report / "claims_vs_papers.csv")
    assert list(saved["verdict"]) == list(claims["verdict"])
    r = CliRunner().invoke(app, ["report", "claims", str(tiny_run), "--out", str(tmp_path / "md")])
    assert r.exit_code == 0 and "RABIT < CoCosNet on FID (ADE20K, RABIT Tab. 1)" in r.stdout


def test_cli_claims_bad_run_path_is_one_error_line(tmp_path, tiny_run):
    from evalkit.reports import results as R

    garbage = tmp_path / "garbage"  # results.csv beside a config.json that is none
    garbage.mkdir()
    R.write(rows([("rabit", "shapes", "FID", 1.0, 0)]), garbage / "results.csv")
    (garbage / "config.json").write_bytes(b"\xff\xfe garbage")
    no_outputs = tmp_path / "no_outputs"  # a run folder without its outputs
    no_outputs.mkdir()
    for name in ("results.csv", "config.json", "run.json"):
        (no_outputs / name).write_bytes((tiny_run / name).read_bytes())
    for bad in (tmp_path / "missing", tmp_path, garbage, no_outputs):
        r = CliRunner().invoke(app, ["report", "claims", str(bad), "--out", str(tmp_path / "out")])
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert not (tmp_path / "out" / "claims_vs_papers.md").exists()


def test_orderings_evalkit_cannot_check_are_listed_not_dropped(tmp_path):
    results = rows([(v, "celebahq-edge", "PSNR", 20.0, 0) for v in ("unite/spade+ot", "unite/spade+uot")])

    def per_items(seed):  # nothing here has per-item values to ask for
        raise AssertionError("per-item values asked for")

    claims = CP.check(results, per_items, paper=_table(tmp_path)).set_index("metric")
    assert claims.loc["FID", "verdict"] == "not resolved (no FID rows in this run)"
    assert claims.loc["user study %", "verdict"] == "not resolved (evalkit does not compute user study %)"
    assert CP.summary_line(claims) == "0 of 2 ordering(s) hold, 0 reversed, 2 not resolved (2 without per-item values in this run)"
