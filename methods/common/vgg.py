"""The VGG19 feature network of the perceptual, contextual and pseudo-pair losses.

Pretrained ImageNet VGG19 (torchvision's ``vgg19-dcbb9e9d.pth``) is loaded when the
weights registry :mod:`evalkit.weights` finds it (``$EVALKIT_WEIGHTS`` or the torch hub
checkpoints folder; hash-verified; the trunk comes from :func:`evalkit.backbones.load_trunk`).
Without it the network is randomly initialised from a fixed seed, ``.pretrained`` is
False, and a warning says so loudly: losses computed with it are *random-feature*
perceptual losses, not the papers'. ``width < 64`` builds a narrow VGG19 (same layer
graph, all widths scaled) that is always random; the ``tiny`` preset uses it for speed.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from evalkit import weights
from evalkit.backbones import IMAGENET_MEAN, IMAGENET_STD, load_trunk

__all__ = ["PerceptualVGG19", "LAYERS"]

_NAMES = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "3_4", "4_1", "4_2", "4_3", "4_4",
          "5_1", "5_2", "5_3", "5_4"]
LAYERS = tuple(f"relu{n}" for n in _NAMES)


class PerceptualVGG19(nn.Module):
    """Frozen VGG19 ``features`` returning the requested ``relu{i}_{j}`` activations of images
    in [-1, 1] ``[B, 3, H, W]`` (mapped to [0, 1], then ImageNet mean / std inside)."""

    def __init__(self, layers: tuple[str, ...], width: int = 64, seed: int = 0):
        super().__init__()
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG19 layers {sorted(unknown)}")
        self.layers = tuple(layers)
        # a present file is verified (corrupt / wrong: EvalkitError, never silently random)
        pretrained = width == 64 and weights.weights_path("vgg19").is_file()
        # random: variance-preserving (He, fan-in) init, so random-feature losses are not
        # vanishingly small through all 16 layers (PyTorch's default init shrinks them)
        trunk, weights_id = load_trunk("vgg19", "pretrained" if pretrained else "random", seed,
                                       init="he-fan-in-per-layer", width=width)
        relus = [i for i, m in enumerate(trunk) if isinstance(m, nn.ReLU)]
        self.features = trunk[: relus[max(LAYERS.index(name) for name in layers)] + 1]
        for m in self.features:
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.pretrained = pretrained
        self.weights_sha256 = weights_id if pretrained else None
        if not pretrained:
            warnings.warn(
                f"VGG19 perceptual network is RANDOMLY INITIALISED (width={width}): perceptual/contextual "
                f"losses are random-feature losses. Import {weights.REGISTRY['vgg19'].filename} with "
                "`evalkit weights import PATH` for the papers' losses." if width == 64 else
                f"VGG19 perceptual network is RANDOMLY INITIALISED (narrow width={width}, the tiny preset): "
                "perceptual/contextual losses are random-feature losses.",
                stacklevel=2,
            )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualVGG19":  # always frozen
        return super().train(False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((images + 1) / 2 - self.mean) / self.std
        out, relu_i = {}, 0
        for module in self.features:
            x = module(x)
            if isinstance(module, nn.ReLU):
                name = LAYERS[relu_i]
                relu_i += 1
                if name in self.layers:
                    out[name] = x
        return out
