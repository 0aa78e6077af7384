"""Streamed image sets (issue 15 item 3): an ImageStack decoded batch by batch gives the
same pixels, hashes and metric values as one held in memory, and SWD's out-of-core path
equals its in-memory one to rounding."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from evalkit import image_stack
from evalkit.cli import app
from evalkit.errors import EvalkitError
from evalkit.image_stack import ImageStack
from evalkit.images import content_hash
from evalkit.metrics import sliced_wasserstein
from evalkit.metrics.evaluate import load_inputs


def _decoder(images: list[np.ndarray], calls: list):
    def prepare(idx):
        calls.append(list(idx))
        return [images[i] for i in idx]
    return prepare


def test_a_streamed_stack_decodes_on_access_and_equals_the_held_one():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(70)]
    calls_held, calls_streamed = [], []
    held = ImageStack.from_files(70, _decoder(images, calls_held))
    streamed = ImageStack.from_files(70, _decoder(images, calls_streamed), hold_bytes=0)
    assert held.held and not streamed.held
    first_pass = [list(range(0, 32)), list(range(32, 64)), list(range(64, 70))]
    assert calls_held == first_pass and calls_streamed == first_pass  # every file decoded (validated) once
    chw = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
    assert held.hashes == streamed.hashes == [content_hash(x) for x in chw]
    assert held.shape == streamed.shape == (70, 3, 12, 10)
    idx = [5, 3, 69, 3]
    assert torch.equal(held[idx], chw[idx]) and torch.equal(streamed[idx], chw[idx])
    assert calls_held == first_pass and calls_streamed[-1] == idx  # only the streamed stack decodes again
    view = ImageStack.concat(streamed.subset([9, 1]), held)
    assert len(view) == 72 and view.hashes[:2] == [held.hashes[9], held.hashes[1]]
    assert torch.equal(view[[0, 2, 1]], chw[[9, 0, 1]])
    assert torch.equal(torch.stack(list(streamed)), chw)


def test_mixed_sizes_have_no_one_shape():
    stack = ImageStack.of([torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 9, dtype=torch.uint8)])
    assert not stack.one_size and not hasattr(stack, "shape")
    assert stack[1].shape == (3, 8, 9)
    with pytest.raises(EvalkitError, match="mixed sizes"):
        stack[[0, 1]]


def test_swd_out_of_core_equals_in_memory(photos):
    a, b = torch.from_numpy(photos(6, 64)), torch.from_numpy(photos(6, 64, offset=7))
    in_memory = sliced_wasserstein(a, b, seed=3)
    streamed = sliced_wasserstein(ImageStack.from_files(6, lambda idx: [a[i].permute(1, 2, 0).numpy() for i in idx],
                                                        hold_bytes=0),
                                  b, seed=3, batch=4, spill_bytes=0, projection_bytes=6 * 128 * 8 * 2 * 5)
    assert streamed.keys() == in_memory.keys()
    for key, value in in_memory.items():
        assert streamed[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    # the pyramid of a batch is the pyramid of those images within the whole set
    assert sliced_wasserstein(a, b, seed=3, batch=1) == pytest.approx(in_memory, rel=1e-12)


def test_evaluate_streamed_equals_held_through_the_cli(tmp_path, photos, write_folder, monkeypatch):
    gen, real, ex = photos(6, 48), photos(6, 48, offset=5), photos(6, 48, offset=9)
    names = [f"s{i}" for i in range(6)]
    g, r, e = (write_folder(tmp_path / d, x, names) for d, x in (("gen", gen), ("real", real), ("ex", ex)))
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as f:
        csv.writer(f).writerows([["name", "query", "exemplar_name"], *([nm, f"q{i // 2}", nm] for i, nm in enumerate(names))])
    args = ["evaluate", "--generated", g, "--real", r, "--exemplars", e, "--pairs", pairs, "--weights", "random",
            "--no-cache", "--json"]

    def run():
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    held = run()
    monkeypatch.setattr(image_stack, "HOLD_BYTES", 0)
    assert not load_inputs(g, r, exemplars=e).generated.held
    streamed = run()
    assert {row["metric"] for row in held} >= {"FID", "KID", "SWD", "LPIPS-gt", "LPIPS-diversity", "PSNR", "SSIM",
                                                "semantic-relu5_2", "style-mean"}
    assert streamed == held  # same pixels, same batches: the same numbers, bit for bit
