"""Value checks at the API boundary (methods.alignment.checks): a user's call with NaN inputs is
one clear error; inside the translators' train_step / translate no value scan runs (each is a
full pass over a tensor and, on an accelerator, a host synchronisation)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from evalkit.errors import EvalkitError
from evalkit.methods.alignment import dense_cosine_attention, ot_topk, unbalanced_sinkhorn
from evalkit.methods.alignment.checks import check_values, trusted
from evalkit.methods.registry import build_translator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "methods"))
from translator_testing import make_batch, micro  # noqa: E402


def _nan(*shape):
    t = torch.rand(*shape)
    t.view(-1)[0] = float("nan")
    return t


def test_user_calls_check_values_and_trusted_blocks_skip_them():
    calls = (lambda: ot_topk(_nan(2, 8), 3),
             lambda: dense_cosine_attention(_nan(1, 4, 2, 2), torch.rand(1, 4, 2, 2)),
             lambda: unbalanced_sinkhorn(torch.full((1, 3), 1 / 3), torch.full((1, 3), 1 / 3), _nan(1, 3, 3), eps=0.1, tau=1.0))
    for call in calls:
        with pytest.raises(EvalkitError, match="NaN or inf"):
            call()
        with trusted():
            assert not check_values()
            call()  # no scan: NaN flows through, as it would from an unchecked kernel
        assert check_values()


@pytest.mark.parametrize("variant", ["rabit", "unite", "cocosnet"])
def test_train_step_and_translate_run_no_value_scan(variant, monkeypatch):
    from evalkit.data import get_dataset

    ds = get_dataset("shapes", split="train", size=32, n=4, seed=0)
    t = build_translator(variant, cond_channels=ds.cond_channels, **micro(variant))
    batch = make_batch(ds, [0, 1])
    scans = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda x: scans.append(x.shape) or real(x))
    losses = t.train_step(batch)
    t.translate(batch)
    assert scans == [] and all(isinstance(v, float) for v in losses.values())
