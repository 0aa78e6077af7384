"""Every registered variant: trains, has the right shapes, saves and loads strictly."""

from __future__ import annotations

import math

import pytest
import torch

from evalkit.errors import EvalkitError
from evalkit.methods.config import make_config
from evalkit.methods.registry import build_translator, list_variants, variant_spec

from translator_testing import make_batch, micro, one_hot_batch

TRAINABLE = list_variants(trainable=True)
PAPER_VARIANTS = {"rabit", "rabit-code", "rabit/baseline-cos", "rabit/ras", "rabit/spe", "rabit/spe+ras",
                  "rabit/manipulation", "unite", "unite-code", "unite/spade", "unite/spade+cos", "unite/spade+ot",
                  "unite/spade+uot", "unite/seace+uot", "unite/seace+uot+ms", "spade", "spade-vae", "cocosnet",
                  "outputs"}
# ADE20K 150 classes + unlabeled, CelebA-HQ 19 parts / 15 edge channels, DeepFashion 20 pose channels,
# COCO-Stuff 182 classes + instance edges
TASK_CHANNELS = [151, 19, 15, 20, 183]


def test_registry_names_every_required_variant():
    assert PAPER_VARIANTS <= set(list_variants())
    with pytest.raises(EvalkitError, match="unknown variant"):
        build_translator("rabit/nope", cond_channels=3)


@pytest.mark.parametrize("variant", TRAINABLE)
def test_variant_trains_20_steps_with_finite_losses(variant, train_set):
    torch.manual_seed(0)
    t = build_translator(variant, cond_channels=train_set.cond_channels, preset="tiny", **micro(variant))
    first = last = None
    for step in range(20):
        losses = t.train_step(make_batch(train_set, [(2 * step) % 8, (2 * step + 1) % 8]))
        assert all(math.isfinite(v) for v in losses.values()), (step, losses)
        first = first or losses
        last = losses
    assert {"gan", "gan_feat", "vgg", "D", "G_total"} <= set(last)
    if t.exemplar_based:
        assert {"contextual", "perceptual", "pseudo"} <= set(last)
    if getattr(t, "corr", None) is not None:
        assert {"cycle", "consistency"} <= set(last)
    # the generator learned something: parameters moved and the D loss changed
    assert last["D"] != first["D"]


@pytest.mark.parametrize("variant", TRAINABLE)
def test_forward_shapes_for_every_task_channel_count(variant):
    for channels in TASK_CHANNELS:
        t = build_translator(variant, cond_channels=channels, preset="tiny", **micro(variant))
        out = t.translate(one_hot_batch(channels, size=32, batch=1))
        assert out.image.shape == (1, 3, 32, 32)
        assert out.image.abs().max() <= 1
        if t.exemplar_based and getattr(t, "corr", None) is not None:
            side = t.config.correspondence.corr_size
            assert out.warped.shape == (1, 3, side, side)


def _config(variant, preset, **overrides):
    return make_config(preset, variant_spec(variant).fields, overrides)


def test_presets_follow_the_papers():
    rabit, unite, coco = (_config(v, "paper") for v in ("rabit", "unite", "cocosnet"))
    assert (rabit.size, rabit.correspondence.corr_size, rabit.block, rabit.topk, rabit.position, rabit.injection) == \
        (256, 128, 2, 3, "spe", "confi")
    assert (unite.size, unite.correspondence.corr_size, unite.correspondence.feat_nc, unite.ot_eps, unite.alignment,
            unite.multi_stage) == (256, 64, 256, 1e-4, "uot", True)
    assert (coco.correspondence.corr_size, coco.temperature) == (64, 0.01)
    assert (rabit.optim.lr_g, rabit.optim.lr_d, rabit.optim.beta1, rabit.optim.beta2) == (1e-4, 4e-4, 0.0, 0.999)
    assert (rabit.generator.ngf, rabit.generator.num_up, rabit.discriminator.num_d) == (64, 5, 2)
    code = _config("unite-code", "tiny")
    assert (code.alignment, code.ot_eps) == ("ot", 0.025)
    rcode = _config("rabit-code", "tiny")
    assert (rcode.topk, rcode.retrieval, rcode.position, rcode.correspondence.corr_size) == (1, "softmax", "coord", 32)
    assert (_config("unite", "tiny").size, _config("unite", "tiny").correspondence.corr_size) == (64, 16)
    assert _config("rabit", "tiny", size=32).correspondence.corr_size == 16  # the ratio follows an overridden size
    assert _config("rabit", "tiny", size=32, corr_size=8).correspondence.corr_size == 8
    with pytest.raises(EvalkitError, match="unknown translator config"):
        _config("rabit", "tiny", widht=3)
    with pytest.raises(EvalkitError, match="unknown preset"):
        _config("rabit", "huge")


def test_paper_preset_builds_at_256():
    t = build_translator("spade", cond_channels=151, preset="paper")
    assert t.config.size == 256 and t.netG.start == 8 and t.netG.conv_img.in_channels == 64


@pytest.mark.parametrize("variant", ["spade", "spade-vae", "cocosnet", "rabit", "rabit-code", "unite", "unite/spade+cos"])
def test_strict_save_load_round_trip_gives_identical_outputs(variant, train_set, tmp_path):
    a = build_translator(variant, cond_channels=train_set.cond_channels, seed=1, **micro(variant))
    a.train_step(make_batch(train_set, [0, 1]))  # move BN statistics, spectral-norm vectors, weights
    torch.save(a.state_dict(), tmp_path / "sd.pt")
    b = build_translator(variant, cond_channels=train_set.cond_channels, seed=2, **micro(variant))
    batch = make_batch(train_set, [2, 3])
    assert not torch.equal(a.translate(batch).image, b.translate(batch).image)
    b.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    torch.testing.assert_close(a.translate(batch).image, b.translate(batch).image, rtol=0, atol=0)


def test_load_is_always_strict(train_set):
    a = build_translator("cocosnet", cond_channels=train_set.cond_channels, **micro("cocosnet"))
    sd = a.state_dict()
    sd.pop(next(iter(sd)))
    with pytest.raises(EvalkitError, match="missing"):
        a.load_state_dict(sd)
    other = build_translator("spade", cond_channels=train_set.cond_channels, **micro("spade")).state_dict()
    with pytest.raises(EvalkitError, match="does not match"):
        a.load_state_dict(other)
    with pytest.raises(EvalkitError, match="strictly"):
        a.load_state_dict(a.state_dict(), strict=False)


def test_exemplar_changes_output_of_exemplar_based_variants_only(train_set):
    batch = make_batch(train_set, [0, 1])
    swapped = make_batch(train_set, [0, 1])
    swapped.exemplar = swapped.exemplar.flip(0)
    swapped.exemplar_cond = swapped.exemplar_cond.flip(0)
    spade = build_translator("spade", cond_channels=train_set.cond_channels, **micro("spade"))
    torch.testing.assert_close(spade.translate(batch).image, spade.translate(swapped).image)
    for variant in ("rabit", "unite", "cocosnet", "spade-vae"):
        t = build_translator(variant, cond_channels=train_set.cond_channels, **micro(variant))
        assert not torch.allclose(t.translate(batch).image, t.translate(swapped).image), variant


def test_confi_confidence_weights_are_in_unit_interval(train_set):
    t = build_translator("rabit", cond_channels=train_set.cond_channels, **micro("rabit"))
    out = t.translate(make_batch(train_set, [0, 1]))
    for key in ("cmap", "multi_cmap"):
        assert out.extras[key].min() >= 0 and out.extras[key].max() <= 1
    side = t.config.correspondence.corr_size
    assert out.confidence.shape == (2, 1, side, side)


def test_manipulation_trains_on_self_reference_pairs(train_set):
    t = build_translator("rabit/manipulation", cond_channels=train_set.cond_channels, **micro("rabit/manipulation"))
    batch = make_batch(train_set, [0, 1])
    prepared = t.prepare_batch(make_batch(train_set, [0, 1]))
    assert prepared.self_ref.all()
    assert not torch.equal(prepared.exemplar, batch.exemplar)
    # the self-reference exemplar is a re-crop/flip of the ground truth: its colours are the ground truth's
    torch.testing.assert_close(prepared.exemplar.mean((2, 3)), batch.image.mean((2, 3)), atol=0.15, rtol=0)
