"""Reference outputs: registered non-trainable variants, pixels equal to independent restatements."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evalkit.config
from evalkit.data import collate, get_dataset
from evalkit.errors import EvalkitError
from evalkit.methods.registry import build_translator, is_reference, list_variants, variant_spec

REFERENCES = {"reference/ground-truth", "reference/blur", "reference/colour-shift", "reference/exemplar-copy"}


def _batch(size: int):
    ds = get_dataset("shapes", split="test", size=size, n=4, seed=0, exemplars_per_query=2)
    return ds, collate([ds[i] for i in range(4)])


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel radius int(3 sigma), reflect padding, restated with numpy weights."""
    radius = int(3 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-x ** 2 / (2 * sigma ** 2))
    k = torch.tensor(k / k.sum(), dtype=images.dtype)
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def test_references_are_registered_as_non_trainable_variants():
    assert REFERENCES | {"outputs"} <= set(list_variants(trainable=False))
    assert not REFERENCES & set(list_variants(trainable=True))
    assert set(list_variants()) == set(list_variants(trainable=True)) | set(list_variants(trainable=False))
    assert set(evalkit.config.REFERENCE_VARIANTS) == REFERENCES
    for name in REFERENCES:
        assert is_reference(name) and not variant_spec(name).trainable and variant_spec(name).config is None
    assert not is_reference("rabit") and not is_reference("outputs")


@pytest.mark.parametrize("size", [32, 64])
def test_reference_pixels_equal_independent_restatements(size):
    ds, batch = _batch(size)
    gt, ex = batch.image, batch.exemplar
    out = {name: build_translator(name, cond_channels=ds.cond_channels).translate(batch).image for name in REFERENCES}
    assert torch.equal(out["reference/ground-truth"], gt)
    assert torch.equal(out["reference/exemplar-copy"], ex)
    shifted = out["reference/colour-shift"]
    for c_out, c_in in ((0, 2), (1, 0), (2, 1)):  # (R, G, B) <- (B, R, G)
        assert torch.equal(shifted[:, c_out], gt[:, c_in])
    blurred = out["reference/blur"]
    torch.testing.assert_close(blurred, _gaussian_blur(gt, size / 32), rtol=0, atol=1e-5)
    assert blurred.std() < gt.std() and not math.isclose(float((blurred - gt).abs().max()), 0.0)


def test_reference_outputs_are_copies_and_cannot_train():
    ds, batch = _batch(32)
    t = build_translator("reference/ground-truth", cond_channels=ds.cond_channels)
    image = t.translate(batch).image
    image.zero_()
    assert batch.image.abs().sum() > 0  # the output does not alias the batch
    assert not t.trainable and list(t.parameters()) == []
    with pytest.raises(EvalkitError, match="cannot be trained"):
        t.train_step(batch)
