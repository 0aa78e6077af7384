"""VGG19 feature extractor for the perceptual, contextual and pseudo-pair losses.

Pretrained ImageNet VGG19 (torchvision's ``vgg19-dcbb9e9d.pth``) is loaded when the
weights registry :mod:`evalkit.weights` finds it (``$EVALKIT_WEIGHTS`` or the torch hub
checkpoints folder; hash-verified).
Without it the network is randomly initialised from a fixed seed, ``.pretrained`` is
False, and a warning says so loudly: losses computed with it are *random-feature*
perceptual losses, not the papers'. ``width < 64`` builds a narrow VGG19 (same layer
graph, all widths scaled) that is always random; the ``tiny`` preset uses it for speed.
Inputs are images in [-1, 1]; ImageNet normalisation is applied inside.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["VGG19Features", "VGG19_FILE", "LAYERS"]

VGG19_FILE = "vgg19-dcbb9e9d.pth"
# torchvision vgg19.features configuration: channel multipliers of 64, "M" = max-pool
_CFG = [1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8]
_NAMES = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "3_4", "4_1", "4_2", "4_3", "4_4",
          "5_1", "5_2", "5_3", "5_4"]
LAYERS = tuple(f"relu{n}" for n in _NAMES)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _find_pretrained() -> tuple[Path, str] | None:
    """``(path, sha256)`` of the verified VGG19 file when the weights registry has it, else None."""
    from evalkit import weights

    if not weights.weights_path("vgg19").is_file():
        return None
    return weights.require("vgg19")  # a corrupt / wrong file is an EvalkitError, never silently random


class VGG19Features(nn.Module):
    """Frozen VGG19 ``features`` returning the requested ``relu{i}_{j}`` activations."""

    def __init__(self, layers: tuple[str, ...], width: int = 64, seed: int = 0):
        super().__init__()
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown VGG19 layers {sorted(unknown)}")
        self.layers = tuple(layers)
        last = max(LAYERS.index(name) for name in layers)
        modules, in_c, conv_i = [], 3, 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for item in _CFG:
                if conv_i > last:
                    break
                if item == "M":
                    modules.append(nn.MaxPool2d(2, 2))
                    continue
                out_c = item * width
                conv = nn.Conv2d(in_c, out_c, 3, padding=1)
                # variance-preserving (He, fan-in) init: activations keep their scale through all 16
                # layers, so random-feature losses are not vanishingly small (PyTorch's default shrinks them)
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
                modules += [conv, nn.ReLU(inplace=False)]
                in_c, conv_i = out_c, conv_i + 1
        self.features = nn.Sequential(*modules)
        self.pretrained = False
        self.weights_sha256 = None
        found = _find_pretrained() if width == 64 else None
        if found is not None:
            path, self.weights_sha256 = found
            state = torch.load(path, map_location="cpu", weights_only=True)
            feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            keep = {k: v for k, v in feats.items() if int(k.split(".")[0]) < len(self.features)}
            self.features.load_state_dict(keep, strict=True)
            self.pretrained = True
        else:
            warnings.warn(
                f"VGG19 perceptual network is RANDOMLY INITIALISED (width={width}): perceptual/contextual "
                "losses are random-feature losses. Import vgg19-dcbb9e9d.pth with `evalkit weights import PATH` "
                "for the papers' losses." if width == 64 else
                f"VGG19 perceptual network is RANDOMLY INITIALISED (narrow width={width}, the tiny preset): "
                "perceptual/contextual losses are random-feature losses.",
                stacklevel=2,
            )
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":  # always frozen
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
