"""The official layouts in ../shared/data: encodings against hand-verified facts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.data import collate, get_dataset
from evalkit.data.pairs import read_pair_list


@pytest.fixture(scope="module")
def roots(shared_data):
    s = shared_data / "cocosnet_samples"
    return {
        "ade20k": s / "imgs" / "ade20k",
        "celebahq": s / "imgs" / "celebahq",
        "celebahq-edge": s / "imgs" / "celebahqedge",
        "deepfashion": s / "imgs" / "DeepFashion",
        "cocostuff": shared_data / "spade_coco_stuff" / "datasets" / "coco_stuff",
        "lists": s / "data",
    }


def test_ade20k_cocosnet_and_spade_encodings(roots):
    ds = get_dataset("ade20k", root=roots["ade20k"], size=64)
    spade = get_dataset("ade20k-spade", root=roots["ade20k"], size=64)
    assert ds.cond_channels == 151 and len(ds) == 6
    s, t = ds[0], spade[0]
    assert s.name == "ADE_val_00001232" and s.cond.shape == (151, 64, 64) and s.image.shape == (3, 64, 64)
    assert torch.all(s.cond.sum(0) == 1) and torch.equal(s.cond.argmax(0), s.label)
    # hand-verified: the top-left of this castle photo is sky, ADE class 3
    assert s.label[0, 0] == 3 and s.cond[3, 0, 0] == 1
    assert t.label[0, 0] == 2  # SPADE shifts by one
    # unlabeled (0) is channel 0 for CoCosNet and channel 150 for SPADE, pixel for pixel
    raw = s.label
    assert torch.equal(t.label, torch.where(raw == 0, torch.tensor(150), raw - 1))
    # test transform = plain resize (nearest) of the original label map
    orig = np.asarray(Image.open(roots["ade20k"] / "validation" / "ADE_val_00001232.png").resize((64, 64), Image.NEAREST))
    assert np.array_equal(s.label.numpy(), orig)


def test_cocostuff_encoding(roots, tmp_path):
    pairs = tmp_path / "pairs.txt"
    keys = sorted(p.name for p in (roots["cocostuff"] / "val_img").glob("*.jpg"))
    pairs.write_text("".join(f"{k},000000017914.jpg\n" for k in keys))
    ds = get_dataset("cocostuff", root=roots["cocostuff"], size=256, pairs=pairs, n=1)
    s = ds[0]
    assert s.name == "000000000139" and ds.cond_channels == 184 and s.cond.shape == (184, 256, 256)
    assert torch.all(s.cond[:183].sum(0) == 1)
    # hand-verified: the middle of the TV on the left of 000000000139 (x=100, y=224 of 640x426) is "tv", 71
    assert s.label[round(224 * 256 / 426), round(100 * 256 / 640)] == 71
    raw = np.asarray(Image.open(roots["cocostuff"] / "val_label" / "000000000139.png").resize((256, 256), Image.NEAREST))
    assert np.array_equal(s.label.numpy() == 182, raw == 255) and (raw == 255).any()  # unlabeled → 182
    # instance edges: only on instance boundaries, and the person's outline is there
    inst = np.asarray(Image.open(roots["cocostuff"] / "val_inst" / "000000000139.png").resize((256, 256), Image.NEAREST))
    edge = s.cond[183].numpy()
    same = np.ones_like(inst, dtype=bool)
    same[:, 1:] &= inst[:, 1:] == inst[:, :-1]
    same[:, :-1] &= inst[:, 1:] == inst[:, :-1]
    same[1:] &= inst[1:] == inst[:-1]
    same[:-1] &= inst[1:] == inst[:-1]
    assert edge[same].sum() == 0 and edge[~same].min() == 1


def test_celebahq_mask_parts(roots):
    ds = get_dataset("celebahq", root=roots["celebahq"], size=128)
    s = ds[0]
    assert s.name == "29922" and s.exemplar_name == "26768" and s.cond.shape == (19, 128, 128)
    # the per-part l_eye / r_eye files (independent of the combined map) mark classes 5 and 6
    for part, cls in (("l_eye", 5), ("r_eye", 6)):
        m = np.asarray(Image.open(roots["celebahq"] / "CelebAMask-HQ-mask-anno" / "14" / f"29922_{part}.png")
                       .convert("L").resize((128, 128), Image.NEAREST)) > 127
        assert m.sum() > 5 and (s.label.numpy()[m] == cls).mean() > 0.95
    # no eye_g file: the glasses channel (16) is empty and the rest is one-hot
    assert s.cond[16].sum() == 0 and torch.all(s.cond.sum(0) == 1)


def test_celebahq_parts_without_combined_map(roots, tmp_path):
    """Building the index map from part masks alone (no all_parts_except_glasses)."""
    src = roots["celebahq-edge"]
    (tmp_path / "CelebA-HQ-img").mkdir()
    (tmp_path / "CelebA-HQ-img" / "22233.jpg").symlink_to(src / "CelebA-HQ-img" / "22233.jpg")
    (tmp_path / "CelebA-HQ-img" / "2994.jpg").symlink_to(src / "CelebA-HQ-img" / "2994.jpg")
    (tmp_path / "CelebAMask-HQ-mask-anno").symlink_to(src / "CelebAMask-HQ-mask-anno")
    (tmp_path / "val.txt").write_text("22233\n")
    (tmp_path / "pairs.txt").write_text("22233.jpg,2994.jpg\n")
    s = get_dataset("celebahq", root=tmp_path, size=64, pairs=tmp_path / "pairs.txt")[0]
    hair = np.asarray(Image.open(src / "CelebAMask-HQ-mask-anno" / "11" / "22233_hair.png").convert("L")
                      .resize((64, 64), Image.NEAREST)) > 127
    assert (s.label.numpy()[hair] == 1).mean() > 0.7  # hair = 1 (other parts painted over it)
    assert set(s.label.unique().tolist()) <= set(range(19)) - {16}


def test_celebahq_edges(roots):
    ds = get_dataset("celebahq-edge", root=roots["celebahq-edge"], size=128)
    s = ds[3]
    assert s.name == "22233" and s.cond.shape == (15, 128, 128) and ds.num_classes is None
    all_edges, dists, part_edges = s.cond[0], s.cond[1:14], s.cond[14]
    assert part_edges.sum() > 100 and torch.all(all_edges >= part_edges)
    # Canny edges are kept outside the face parts only: none inside the nose interior
    nose = np.asarray(Image.open(roots["celebahq-edge"] / "CelebAMask-HQ-mask-anno" / "11" / "22233_nose.png")
                      .convert("L").resize((128, 128), Image.NEAREST)) > 127
    interior = nose & np.roll(nose, 2, 0) & np.roll(nose, -2, 0) & np.roll(nose, 2, 1) & np.roll(nose, -2, 1)
    assert interior.sum() > 10 and all_edges.numpy()[interior].sum() == 0
    # 22233 has no eye_g / mouth / l_ear file: their distance maps are flat at the clip value (1)
    for part_index in (5, 9, 11):  # l_ear, mouth, eye_g in CoCosNet's order
        assert torch.all(dists[part_index] == 1.0)
    # a present part (nose, index 7): distance 0 on its own boundary
    assert dists[7].min() == 0


def test_deepfashion_pose(roots):
    ds = get_dataset("deepfashion", root=roots["deepfashion"], size=256)
    s = ds[0]
    assert s.name == "WOMEN__Dresses__id_00000244__02_1_front" and s.cond.shape == (20, 256, 256)
    assert s.exemplar_name == "WOMEN__Tees_Tanks__id_00007059__03_3_back" and s.label is None
    pose, dists = s.cond[:3], s.cond[3:]
    # subset of this image: r_ankle (10), l_ankle (13), r_ear (16) are -1
    missing_limbs = {8, 11, 14}  # r_knee-r_ankle, l_knee-l_ankle, r_eye-r_ear
    for i in range(17):
        if i in missing_limbs:
            assert torch.all(dists[i] == 1.0), i
        else:
            assert dists[i].min() == 0, i
    # the neck joint (candidate 1 at x=132, y=74) is drawn; the top-left corner is empty
    assert pose[:, 74, 132].sum() > 0 and pose[:, 0, 0].sum() == 0
    # each present limb covers the midpoint of its two joints (candidates of the subset file)
    cand = np.loadtxt(roots["deepfashion"] / "pose/WOMEN/Dresses/id_00000244/02_1_front_candidate.txt")
    subset = np.loadtxt(roots["deepfashion"] / "pose/WOMEN/Dresses/id_00000244/02_1_front_subset.txt")[:18]
    for i, (a, b) in enumerate([(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9)]):
        mid = (cand[int(subset[a]), :2] + cand[int(subset[b]), :2]) / 2
        assert dists[i, int(mid[1]), int(mid[0])] == 0, i
    # back view (03_3_back): the nose is missing, so nose-neck and nose-eye limbs are absent
    back = get_dataset("deepfashion", root=roots["deepfashion"], size=64)[0].exemplar_cond
    assert torch.all(back[3 + 12] == 1.0) and torch.all(back[3 + 13] == 1.0)


@pytest.mark.parametrize("name,list_name", [("ade20k", "ade20k_ref_test.txt"), ("celebahq", "celebahq_ref_test.txt"),
                                            ("celebahq-edge", "celebahq_ref_test.txt"),
                                            ("deepfashion", "deepfashion_ref_test.txt")])
def test_cocosnet_test_pairings_resolve(roots, name, list_name):
    ds = get_dataset(name, root=roots[name], size=32)
    assert ds.pairs_path == roots["lists"] / list_name
    pairs = read_pair_list(ds.pairs_path)
    for item in ds.items:
        ex = pairs[item.key][0]
        assert ds.image_path(ex, True).is_file()
        assert all(f.is_file() for f in ds.label_files(ex, True))
    s = ds[len(ds) - 1]
    assert s.exemplar_name == ds.sample_name(pairs[ds.items[-1].key][0]) and not s.self_ref


def test_train_transforms_and_collate(roots, tmp_path):
    """Train split: resize 286/256 → random crop + flip, CoCosNet's 70/30 exemplar sampling."""
    pairs = tmp_path / "ade20k_ref.txt"
    keys = sorted(p.name for p in (roots["ade20k"] / "training").glob("*.jpg"))
    pairs.write_text("".join(f"{k},{keys[(i + 1) % 6]},{keys[(i + 2) % 6]}\n" for i, k in enumerate(keys)))
    ds = get_dataset("ade20k", root=roots["ade20k"], split="train", size=32, pairs=pairs, seed=1)
    samples = [ds[i] for i in range(6)]
    again = [ds[i] for i in range(6)]
    assert all(torch.equal(a.cond, b.cond) and a.exemplar_name == b.exemplar_name for a, b in zip(samples, again))
    b = collate(samples)
    assert b.cond.shape == (6, 151, 32, 32)
    for s in samples:
        if s.self_ref:
            assert s.exemplar_name == s.name
        else:
            assert s.exemplar_name != s.name
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i].image, samples[i].image) for i in range(6))


def test_celebahq_glasses_channel(roots, tmp_path):
    """An ``_eye_g.png`` mask fills channel 16 on top of the one-hot parts (CoCosNet)."""
    src = roots["celebahq"]
    for name in ("CelebA-HQ-img",):
        (tmp_path / name).symlink_to(src / name)
    anno = tmp_path / "CelebAMask-HQ-mask-anno"
    (anno / "14").mkdir(parents=True)
    (anno / "all_parts_except_glasses").symlink_to(src / "CelebAMask-HQ-mask-anno" / "all_parts_except_glasses")
    glasses = np.zeros((512, 512, 3), np.uint8)
    glasses[200:260, 100:400] = 255  # a band across the eyes
    Image.fromarray(glasses).save(anno / "14" / "29922_eye_g.png")
    (tmp_path / "val.txt").write_text("29922\n")
    (tmp_path / "pairs.txt").write_text("29922.jpg,26768.jpg\n")
    s = get_dataset("celebahq", root=tmp_path, size=64, pairs=tmp_path / "pairs.txt")[0]
    band = np.zeros((64, 64), bool)
    band[25:32, 12:50] = True  # nearest samples source pixel 8j + 4: rows 200..259, cols 100..399
    assert torch.all(s.cond[16][torch.from_numpy(band)] == 1) and s.cond[16].sum() == band.sum()
    # the parts under the glasses stay set: those pixels have two ones
    assert torch.all(s.cond.sum(0)[torch.from_numpy(band)] == 2) and torch.all(s.label[torch.from_numpy(band)] == 16)


def test_train_transform_is_resize_286_crop_256_flip_scaled_by_size(roots, tmp_path):
    """Train: image and label map resized to round(size * 286 / 256) (36 for 32), one shared
    random size x size crop and flip; restated here with PIL on the original files."""
    from evalkit.data.transforms import get_params

    pairs = tmp_path / "ade20k_ref.txt"
    keys = sorted(p.name for p in (roots["ade20k"] / "training").glob("*.jpg"))
    pairs.write_text("".join(f"{k},{keys[(i + 1) % 6]}\n" for i, k in enumerate(keys)))
    ds = get_dataset("ade20k", root=roots["ade20k"], split="train", size=32, pairs=pairs, seed=5)
    flips, corners = set(), set()
    for i, key in enumerate(ds.items[j].key for j in range(len(ds))):
        p = get_params(np.random.default_rng([5, 0, i]), "train", 32)  # the sample's own generator
        assert p.load == 36 and 0 <= p.x <= 4 and 0 <= p.y <= 4
        flips.add(p.flip)
        corners.add((p.x, p.y))

        def expect(img, resample):
            out = img.resize((36, 36), resample).crop((p.x, p.y, p.x + 32, p.y + 32))
            return np.asarray(out.transpose(Image.FLIP_LEFT_RIGHT) if p.flip else out)

        s = ds[i]
        image = expect(Image.open(roots["ade20k"] / "training" / key).convert("RGB"), Image.BICUBIC)
        label = expect(Image.open(roots["ade20k"] / "training" / key.replace(".jpg", ".png")), Image.NEAREST)
        np.testing.assert_allclose(s.image.numpy(), image.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)
        assert np.array_equal(s.label.numpy(), label) and torch.equal(s.cond.argmax(0), s.label)
        assert s.image.dtype == torch.float32 and s.label.dtype == torch.long
    assert flips == {True, False} and len(corners) > 1  # really random, not a centre crop


def _contract_dataset(name, roots, tmp_path):
    """Every registered dataset at 32 px on the real samples (or built-in scenes)."""
    tmp_path.mkdir(parents=True)
    from evalkit.data.manipulation import write_manipulation_set

    if name == "cocostuff":
        pairs = tmp_path / "pairs.txt"
        keys = sorted(p.name for p in (roots["cocostuff"] / "val_img").glob("*.jpg"))
        pairs.write_text("".join(f"{k},000000017914.jpg\n" for k in keys))
        return get_dataset(name, root=roots[name], size=32, n=3, pairs=pairs)
    if name == "manipulation":
        write_manipulation_set("shapes", None, tmp_path / "manip", size=32, n=3, progress=False)
        return get_dataset(name, root=tmp_path / "manip", size=32)
    if name.startswith("ade20k"):
        return get_dataset(name, root=roots["ade20k"], size=32, n=3)
    return get_dataset(name, root=roots.get(name), size=32, n=3)


def test_every_registered_dataset_meets_the_sample_contract(roots, tmp_path):
    """docs/contracts.md: cond/exemplar_cond float [C, H, W] with C = cond_channels; image and
    exemplar float [3, H, W] in [-1, 1]; label long [H, W] or None; self_ref bool; names
    unique and safe as file stems; collate stacks them."""
    import re

    from evalkit.data import list_datasets

    safe = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
    for name in list_datasets():
        ds = _contract_dataset(name, roots, tmp_path / name)
        samples = [ds[i] for i in range(min(3, len(ds)))]
        assert samples, name
        for s in samples:
            for field in ("cond", "exemplar_cond"):
                t = getattr(s, field)
                assert t.dtype == torch.float32 and t.shape == (ds.cond_channels, 32, 32), (name, field, t.shape)
                assert torch.isfinite(t).all(), (name, field)
            for field in ("image", "exemplar"):
                t = getattr(s, field)
                assert t.dtype == torch.float32 and t.shape == (3, 32, 32), (name, field)
                assert -1 <= float(t.min()) and float(t.max()) <= 1, (name, field)
            if s.label is not None:
                assert s.label.dtype == torch.long and s.label.shape == (32, 32), name
                assert int(s.label.min()) >= 0, name
                if ds.num_classes is not None:  # label conditions: ids index the one-hot channels
                    assert int(s.label.max()) < ds.num_classes <= ds.cond_channels, name
            assert isinstance(s.self_ref, bool), name
            assert safe.fullmatch(s.name) and safe.fullmatch(s.exemplar_name), (name, s.name, s.exemplar_name)
        assert len({s.name for s in samples}) == len(samples), name
        batch = collate(samples)
        assert batch.cond.shape[0] == len(samples) and batch.self_ref.dtype == torch.bool
