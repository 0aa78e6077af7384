"""Journey 4: reproduce LPIPS diversity outside `shapes` (ADE20K in CoCosNet's layout).

Before: `evalkit train --dataset ade20k` on a root without `ade20k_ref.txt` said "pass
--pairs", but `train` had no --pairs; `infer` had no --exemplars-per-query, and the real
datasets used only the first exemplar of each pair-list line, so LPIPS diversity could not
be computed on real data. The variant is spade-vae, whose exemplar sets the style (the
label-only spade gives every exemplar of a query the same output: diversity 0 by construction).
"""

from __future__ import annotations

import json

import pandas as pd

from journey_helpers import cli, one_error_line

EXEMPLARS = 3


def _pair_lists(ade, tmp_path):
    """Hand-written pair lists: each query with the training images in turn (top-K style)."""
    train = sorted(p.name for p in (ade / "training").glob("*.jpg"))
    val = sorted(p.name for p in (ade / "validation").glob("*.jpg"))
    (tmp_path / "train_pairs.txt").write_text(
        "".join(f"{q},{train[(i + 1) % 6]},{train[(i + 2) % 6]}\n" for i, q in enumerate(train)))
    (tmp_path / "test_pairs.txt").write_text(
        "".join(f"{q},{','.join(train[(i + j) % 6] for j in range(EXEMPLARS))}\n" for i, q in enumerate(val)))
    return tmp_path / "train_pairs.txt", tmp_path / "test_pairs.txt", train


def test_first_k_exemplars_of_each_line_give_lpips_diversity_on_ade20k(ade, tmp_path):
    train_pairs, test_pairs, train = _pair_lists(ade, tmp_path)
    common = ["--dataset", "ade20k", "--root", ade, "--device", "cpu"]
    missing = cli("train", "--variant", "spade-vae", *common, "--steps", "1", "--size", "32", "--out", tmp_path / "ck",
                  code=2)
    assert "pass --pairs" in one_error_line(missing)
    cli("train", "--variant", "spade-vae", *common, "--pairs", train_pairs, "--steps", "1", "--size", "32",
        "--out", tmp_path / "ck")
    r = cli("infer", "--checkpoint", tmp_path / "ck", *common, "--pairs", test_pairs,
            "--exemplars-per-query", EXEMPLARS, "--out", tmp_path / "out", "--json")
    assert json.loads(r.stdout)["n_images"] == 6 * EXEMPLARS
    pairs = pd.read_csv(tmp_path / "out" / "inputs" / "pairs.csv")
    first = pairs[pairs["query"] == "ADE_val_00001232"]
    assert first["name"].tolist() == [f"ADE_val_00001232_e{k}" for k in range(EXEMPLARS)]
    assert first["exemplar_name"].tolist() == [t[:-4] for t in train[:EXEMPLARS]]  # the first K of its line
    out = tmp_path / "out"
    r = cli("evaluate", "--generated", out / "spade-vae" / "images", "--real", out / "inputs" / "real",
            "--pairs", out / "inputs" / "pairs.csv", "--metrics", "lpips-diversity", "--weights", "random",
            "--no-cache", "--json")
    row = json.loads(r.stdout)[0]
    assert row["metric"] == "LPIPS-diversity" and row["n"] == 6 and row["value"] > 0
    too_many = cli("infer", "--checkpoint", tmp_path / "ck", *common, "--pairs", test_pairs,
                   "--exemplars-per-query", EXEMPLARS + 1, "--out", tmp_path / "out2", code=2)
    assert f"exemplars_per_query={EXEMPLARS + 1} but the line of" in one_error_line(too_many)
