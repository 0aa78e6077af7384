"""Every registered variant: trains, has the right shapes, saves and loads strictly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evalkit.errors import EvalkitError
from evalkit.methods.config import make_config
from evalkit.methods.registry import build_translator, list_variants, variant_spec

from translator_testing import make_batch, micro, one_hot_batch

TRAINABLE = list_variants(trainable=True)
PAPER_VARIANTS = {"rabit", "rabit-code", "rabit/baseline-cos", "rabit/ras", "rabit/coord+ras", "rabit/spe", "rabit/spe+ras",
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
    assert {"gan", "gan_feat", "D", "G_total"} <= set(last)
    if t.exemplar_based:  # L_pse instead of a VGG loss to the ground truth on every pair; L_cxt is off at tiny
        assert {"perceptual", "pseudo"} <= set(last) and not {"vgg", "contextual"} & set(last)
    else:  # SPADE's VGG loss, or at tiny the pixel L1 that replaces it (methods.config.TINY_FAMILY)
        assert ("vgg" in last) == bool(t.config.losses.vgg) and ("l1" in last) == bool(t.config.losses.l1)
        assert t.config.losses.vgg or t.config.losses.l1
    if getattr(t, "corr", None) is not None:
        assert {"cycle", "consistency"} <= set(last)
        assert ("mask" in last) == (t.config.losses.mask > 0)
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
            unite.multi_stage) == (256, 64, 128, 1e-4, "uot", True)  # UNITE §4: 128-d features
    assert (coco.correspondence.corr_size, coco.temperature) == (64, 0.01)
    assert (rabit.optim.lr_g, rabit.optim.lr_d, rabit.optim.beta1, rabit.optim.beta2) == (1e-4, 4e-4, 0.0, 0.999)
    assert (rabit.generator.ngf, rabit.generator.num_up, rabit.discriminator.num_d) == (64, 5, 2)
    code = _config("unite-code", "tiny")
    assert (code.alignment, code.ot_eps, code.ot_masses) == ("ot", 0.025, "softmax")
    assert (rabit.topk_eps, rabit.losses.contextual, coco.losses.contextual, rabit.cx_bandwidth) == (0.1, 1.0, 10.0, 0.1)
    assert _config("spade", "paper").losses.gan == 1.0  # NVlabs/SPADE
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
    for variant in ("rabit", "unite", "cocosnet", "spade-vae", "unite/spade"):
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


def test_vgg_loss_to_the_ground_truth_sees_self_reference_pairs_only(train_set):
    """A gradient hook on the generated image: the L_pse term (the only VGG loss to the ground truth
    of the exemplar-based methods) sends gradient to the self-reference samples of the batch and
    none to the cross-exemplar ones (CoCosNet / UNITE / RABIT code: lambda_vgg * fm_ratio on
    self-reference samples only); label-only SPADE's VGG loss (paper preset weights) and the
    tiny preset's pixel L1 that replaces it see every pair; the tiny preset's pixel L1 of the
    exemplar-based methods sees the self-reference pairs only, like L_pse."""
    batch = make_batch(train_set, [0, 1, 2, 3])
    batch.self_ref = torch.tensor([True, False, True, False])
    for variant, term, seen in (("cocosnet", "pseudo", [True, False, True, False]),
                                ("rabit", "pseudo", [True, False, True, False]),
                                ("spade", "vgg", [True, True, True, True]),
                                ("spade", "l1", [True, True, True, True]),
                                ("unite", "l1", [True, False, True, False]),
                                ("cocosnet", "l1", [True, False, True, False])):
        over = {"losses": {"vgg": 10.0}} if term == "vgg" else {}
        t = build_translator(variant, cond_channels=train_set.cond_channels, **micro(variant), **over)
        out = t.generate(batch)
        grads = {}
        out["image"].register_hook(lambda g: grads.setdefault("image", g))
        losses = t.generator_losses(batch, out)
        losses[term].backward()
        reached = grads["image"].flatten(1).abs().sum(1) > 0
        assert reached.tolist() == seen, (variant, reached)
        assert "vgg" not in losses if t.exemplar_based else "pseudo" not in losses
        if term == "l1":  # hand-checked: the mean absolute pixel error over the pairs it sees, x the weight
            err = (out["image"] - batch.image).abs().flatten(1).mean(1)[torch.tensor(seen)].mean()
            # rtol: CoCosNet's weights s_b / (sum_b s_b + 1e-5) sum to 1 - 5e-6 over two samples
            torch.testing.assert_close(losses["l1"], t.config.losses.l1 * err, rtol=1e-5, atol=0)


def test_spade_vae_encodes_the_ground_truth_in_training_and_the_exemplar_after(train_set):
    """NVlabs' SPADE-VAE: the style encoder sees the real image while training (KL keeps the code
    near N(0, I)); translation encodes the exemplar. A forward hook records what it saw."""
    for variant in ("spade-vae", "unite/spade"):
        t = build_translator(variant, cond_channels=train_set.cond_channels, **micro(variant))
        seen = []
        t.style.encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
        batch = make_batch(train_set, [0, 1])
        t.train_step(batch)
        t.translate(batch)
        torch.testing.assert_close(seen[0], batch.image)
        torch.testing.assert_close(seen[-1], batch.exemplar)



def test_spade_vae_is_nvlabs_at_paper_and_a_deterministic_code_at_tiny(train_set):
    """``paper``: NVlabs' VAE (the training code is sampled, so two passes differ; KL term; instance
    norm in the encoder; the VGG loss). ``tiny`` (methods.config.TINY_FAMILY): the code is the
    encoder's mean (two passes agree), no KL, no encoder norm, a pixel L1 instead of the random VGG."""
    batch = make_batch(train_set, [0, 1])
    for preset, sampled, norm in (("paper", True, nn.InstanceNorm2d), ("tiny", False, nn.Identity)):
        t = build_translator("spade-vae", cond_channels=train_set.cond_channels, preset=preset, size=32, num_up=3,
                             ngf=8, z_dim=16, spade_hidden=16, ndf=8, n_layers_d=2, vgg_width=4)
        t.style.eval()  # spectral norm's power iteration stays put; the training code is drawn as in training
        x0 = [t.style(batch.image, sample=t.sample)[0] for _ in range(2)]
        t.train()
        assert (not torch.equal(x0[0], x0[1])) == sampled, preset
        assert isinstance(t.style.encoder.body[1], norm), preset
        losses = t.generator_losses(batch, t.generate(batch))
        assert ("kld" in losses) == sampled and ("vgg" in losses) == sampled and ("l1" in losses) != sampled, preset

def test_spe_uses_a_real_region_map_or_falls_back_to_the_global_grid(train_set):
    """SPE from the batch's label maps (or a one-hot condition); on edge channels without one it
    is the global CoordConv grid, recorded as such in protocol_meta (written to meta.json)."""
    from evalkit.data import get_dataset
    from evalkit.methods.alignment.position import coord_grid, semantic_position_encoding

    edges = get_dataset("shapes-edge", split="test", size=32, n=2, seed=0)
    t = build_translator("rabit", cond_channels=edges.cond_channels, **micro("rabit"))
    batch = make_batch(edges, [0, 1])
    a = t.align(batch)
    side = a["qx"].shape[-1]
    small = torch.nn.functional.interpolate(batch.label[:, None].float(), size=(side, side), mode="nearest")[:, 0].long()
    torch.testing.assert_close(a["qx"][:, -2:] * 2 ** 0.5, semantic_position_encoding(small))
    assert t.protocol_meta["position_encoding"] == "spe"
    batch.label = batch.exemplar_label = None  # edges and no parsing: the arg-max would be edge vs not-edge
    a = t.align(batch)
    torch.testing.assert_close(a["qx"][:, -2:] * 2 ** 0.5, coord_grid(2, side, side))
    assert t.protocol_meta["position_encoding"] == "coord (no region map)"


def test_cocosnet_is_the_released_configuration_and_uot_reports_its_residual(train_set, tmp_path):
    import json

    from evalkit.data import get_dataset
    from evalkit.methods.training import infer

    c = build_translator("cocosnet", cond_channels=train_set.cond_channels).config
    assert (c.centre, c.match_kernel, c.label_mix, c.generator.norm_g, c.losses.mask) == (True, 3, True, "pono", 100.0)
    assert build_translator("unite/spade+ot", cond_channels=3).corr.aligner.masses == "uniform"
    assert build_translator("unite", cond_channels=3).corr.aligner.masses == "eq3"
    assert build_translator("unite", cond_channels=3, preset="paper").config.correspondence.feat_nc == 128
    assert build_translator("rabit/coord+ras", cond_channels=3).config.position == "coord"
    t = build_translator("unite", cond_channels=train_set.cond_channels, **micro("unite"))
    vdir = infer(t, get_dataset("shapes", split="test", size=32, n=2), tmp_path, progress=False)
    meta = json.loads((vdir / "meta.json").read_text())
    assert meta["uot_marginal_residual"] >= 0 and meta["uot_iterations"] > 0
