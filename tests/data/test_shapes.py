"""The built-in "shapes" dataset: determinism, pairing semantics, condition variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evalkit.data import collate, get_dataset, list_datasets, to_uint8_image, visualise_cond
from evalkit.data.shapes import edge_channels, edit_layout, rasterise, render


def test_registered():
    assert {"shapes", "shapes-edge", "shapes-keypoints"} <= set(list_datasets())


def test_bit_identical_across_runs_and_order():
    a = get_dataset("shapes", size=32, n=6, seed=3)
    b = get_dataset("shapes", size=32, n=6, seed=3)
    for i in (5, 0, 3):  # lazily generated: order must not matter
        sa, sb = a[i], b[i]
        for field in ("cond", "image", "exemplar", "exemplar_cond", "label"):
            assert torch.equal(getattr(sa, field), getattr(sb, field)), field
        assert sa.name == sb.name and sa.exemplar_name == sb.exemplar_name
    c = get_dataset("shapes", size=32, n=6, seed=4)
    assert not torch.equal(a[0].image, c[0].image)


def test_fields_shapes_and_ranges():
    ds = get_dataset("shapes", size=32, n=4, seed=0)
    s = ds[1]
    assert ds.cond_channels == 8 and ds.num_classes == 8 and s.cond.shape == (8, 32, 32)
    assert s.image.shape == s.exemplar.shape == (3, 32, 32)
    assert s.image.min() >= -1 and s.image.max() <= 1 and s.image.dtype == torch.float32
    # one-hot consistent with the index map
    assert torch.equal(s.cond.argmax(0), s.label) and torch.all(s.cond.sum(0) == 1)
    assert not s.self_ref and s.name != s.exemplar_name
    assert len({ds[i].name for i in range(4)}) == 4


def test_ground_truth_is_query_layout_in_exemplar_style():
    ds = get_dataset("shapes", size=48, n=8, seed=0)
    for i in range(8):
        s, sc = ds[i], ds.scene(i)
        # layouts differ, and the exemplar contains every class of the query
        assert not torch.equal(s.label, s.exemplar_label)
        assert set(s.label.unique().tolist()) - {0} <= set(sc["exemplar_layout"].shapes[j].cls for j in range(len(sc["exemplar_layout"].shapes)))
        gt = render(s.label.numpy(), sc["exemplar_style"])
        own = render(s.label.numpy(), sc["query_style"])
        np.testing.assert_allclose(s.image.permute(1, 2, 0).numpy(), gt * 2 - 1, atol=1e-6)
        # the query's own style is far from the ground truth: translating needs the exemplar
        assert np.abs(own - gt).mean() > 0.1
        # per class, the exemplar's mean colour predicts the ground truth's mean colour
        for c in s.label.unique().tolist():
            if (s.exemplar_label == c).sum() < 20 or (s.label == c).sum() < 20:
                continue
            ex_mean = s.exemplar[:, s.exemplar_label == c].mean(1)
            gt_mean = s.image[:, s.label == c].mean(1)
            own_mean = torch.from_numpy(own * 2 - 1).permute(2, 0, 1)[:, s.label == c].mean(1)
            assert (ex_mean - gt_mean).abs().max() < (own_mean - gt_mean).abs().max() + 0.15


def test_condition_variants_come_from_the_same_scene():
    lab = get_dataset("shapes", size=32, n=2, seed=1)[1]
    edge = get_dataset("shapes-edge", size=32, n=2, seed=1)[1]
    kp = get_dataset("shapes-keypoints", size=32, n=2, seed=1)[1]
    assert torch.equal(lab.image, edge.image) and torch.equal(lab.image, kp.image)
    assert edge.cond.shape == (2, 32, 32) and kp.cond.shape == (7, 32, 32)
    # edges are exactly where a 4-neighbour has another class
    label = lab.label.numpy()
    diff = np.zeros_like(label, dtype=bool)
    diff[:, 1:] |= label[:, 1:] != label[:, :-1]
    diff[1:, :] |= label[1:, :] != label[:-1, :]
    assert np.all(edge.cond[0].numpy()[diff] == 1)
    interior = np.ones_like(diff)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        interior &= np.roll(label, (dy, dx), (0, 1)) == label
    interior[[0, -1], :] = interior[:, [0, -1]] = False
    assert np.all(edge.cond[0].numpy()[interior] == 0)
    assert np.all(edge.cond[1].numpy()[edge.cond[0].numpy() == 1] == 0)
    # a class absent from the layout has an empty heat map; present ones peak near 1
    ds = get_dataset("shapes", size=32, n=2, seed=1)
    in_layout = {s.cls for s in ds.scene(1)["query_layout"].shapes}
    for c in range(1, 8):
        peak = float(kp.cond[c - 1].max())
        assert peak > 0.5 if c in in_layout else peak == 0.0


def test_edge_channels_hand_case():
    label = np.zeros((6, 6), dtype=np.int64)
    label[:, 3:] = 1
    e = edge_channels(label)
    assert e[0, :, 2:4].sum() == 12 and e[0].sum() == 12
    assert e[1, 0, 0] == pytest.approx(2 / 6, abs=0.02)


def test_train_split_self_reference_pairs():
    ds = get_dataset("shapes", split="train", size=32, n=40, seed=0)
    samples = [ds[i] for i in range(40)]
    refs = [s for s in samples if s.self_ref]
    assert 3 <= len(refs) <= 25  # 30% expected
    s = refs[0]
    assert s.exemplar_name == s.name
    # the exemplar is the ground truth re-cropped (train: resize 36 → crop 32) and maybe flipped
    assert s.exemplar.shape == s.image.shape and s.exemplar_label.shape == s.label.shape
    assert set(s.exemplar_label.unique().tolist()) <= set(s.label.unique().tolist())
    test_ds = get_dataset("shapes", split="test", size=32, n=3, seed=0)
    assert not any(test_ds[i].self_ref for i in range(3))
    assert not torch.equal(test_ds[0].image, ds[0].image)  # splits do not overlap


def test_several_exemplars_per_query():
    ds = get_dataset("shapes", size=32, n=6, seed=0, exemplars_per_query=3)
    s0, s1, s3 = ds[0], ds[1], ds[3]
    assert s0.query == s1.query != s3.query and s0.name != s1.name
    assert torch.equal(s0.label, s1.label) and not torch.equal(s0.image, s1.image)


def test_edit_layout_moves_one_object():
    ds = get_dataset("shapes", size=32, n=1, seed=0)
    layout = ds.scene(0)["query_layout"]
    idx = next(i for i, s in enumerate(layout.shapes) if s.kind == "ellipse") if any(
        s.kind == "ellipse" for s in layout.shapes) else 0
    moved = edit_layout(layout, idx, dx=0.1, scale=1.2)
    assert moved.shapes[idx].cx == pytest.approx(layout.shapes[idx].cx + 0.1)
    assert moved.shapes[idx].rx == pytest.approx(layout.shapes[idx].rx * 1.2)
    assert [s for i, s in enumerate(moved.shapes) if i != idx] == [s for i, s in enumerate(layout.shapes) if i != idx]
    assert not np.array_equal(rasterise(moved, 32), rasterise(layout, 32))


def test_collate_and_visualise():
    ds = get_dataset("shapes-keypoints", size=32, n=3, seed=0)
    b = collate([ds[i] for i in range(3)])
    assert b.cond.shape == (3, 7, 32, 32) and b.self_ref.dtype == torch.bool and b.name == [ds[i].name for i in range(3)]
    assert b.to("cpu").image.shape == (3, 3, 32, 32)
    img = to_uint8_image(torch.tensor([[[-1.0, 1.0]], [[0.0, 0.5]], [[-1.5, 1.2]]]))
    # floor((x + 1) * 127.5 + 0.5), clamped: 0 → 128 (127.5 rounds up), 0.5 → 191 (191.25)
    assert img.tolist() == [[[0, 128, 0], [255, 191, 255]]] and img.dtype == np.uint8
    vis = visualise_cond(get_dataset("shapes", size=32, n=1)[0].cond)
    assert vis.shape == (32, 32, 3) and vis.dtype == np.uint8


def test_same_samples_in_dataloader_workers():
    from torch.utils.data import DataLoader

    ds = get_dataset("shapes", split="train", size=16, n=4, seed=2)
    direct = collate([ds[i] for i in range(4)])
    (batch,) = list(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate))
    assert torch.equal(batch.image, direct.image) and torch.equal(batch.exemplar, direct.exemplar)
    assert torch.equal(batch.self_ref, direct.self_ref) and batch.name == direct.name
