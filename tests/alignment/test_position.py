"""Semantic position encoding (RABIT §3.1) and CoordConv grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from evalkit.errors import EvalkitError
from evalkit.methods.alignment import coord_grid, semantic_position_encoding


def test_spe_has_origin_at_each_region_centre_and_spans_minus1_1():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 9, 11), generator=g)
    spe = semantic_position_encoding(labels)
    assert spe.shape == (2, 2, 9, 11)
    assert spe.abs().max() <= 1.0
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    for bi in range(2):
        for c in range(4):
            mask = labels[bi] == c
            for ch, coord in ((0, xs), (1, ys)):
                vals = spe[bi, ch][mask]
                assert vals.mean().abs() < 1e-5          # origin at the centre
                assert vals.abs().max() == pytest.approx(1.0)  # normalised extent
                # an affine map of the coordinate within the region
                centred = coord[mask] - coord[mask].mean()
                torch.testing.assert_close(vals, centred / centred.abs().max())


def test_spe_hand_checked_case_and_one_hot_input():
    labels = torch.tensor([[[0, 0, 1], [0, 0, 1], [2, 2, 2]]])
    spe = semantic_position_encoding(labels)
    # region 0: 2x2 square, centre (0.5, 0.5) -> x in {-1, 1}, y in {-1, 1}
    assert spe[0, 0, :2, :2].tolist() == [[-1.0, 1.0], [-1.0, 1.0]]
    assert spe[0, 1, :2, :2].tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    # region 1: a vertical bar: x is constant (0), y in {-1, 1}
    assert spe[0, 0, :2, 2].tolist() == [0.0, 0.0]
    assert spe[0, 1, :2, 2].tolist() == [-1.0, 1.0]
    # region 2: bottom row: x in {-1, 0, 1}, y constant
    assert spe[0, 0, 2].tolist() == [-1.0, 0.0, 1.0]
    one_hot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(semantic_position_encoding(one_hot), spe)


def test_coord_grid():
    grid = coord_grid(2, 3, 5)
    assert grid.shape == (2, 2, 3, 5)
    assert grid[0, 0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert grid[1, 1, :, 0].tolist() == [-1.0, 0.0, 1.0]


def test_spe_bad_input():
    with pytest.raises(EvalkitError, match="negative"):
        semantic_position_encoding(torch.tensor([[[0, -1]]]))
    with pytest.raises(EvalkitError, match="labels must be"):
        semantic_position_encoding(torch.zeros(4, 4, dtype=torch.long))
