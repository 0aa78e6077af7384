"""Join a leaderboard with any external method: translators that are not trained here.

``outputs`` reads another model's saved outputs from a folder, matching files to
samples by name (``<folder>/<sample name>.png|.jpg|...``, any of
:data:`evalkit.files.IMAGE_EXTENSIONS`); it records which image format the files were
in (``protocol_meta["image_format"]``: JPEG outputs score differently from PNG ones,
so the protocol must say so). Optionally a ``warped/`` sub-folder supplies warped
exemplars by the same names.

Released checkpoints run by their own code (SPADE, CoCosNet, CoCosNet-v2, UNITE) are
:mod:`evalkit.baselines.official`; ``build_outputs(..., cocosnet_checkout=...)`` is kept as a
shortcut to its CoCosNet entry.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evalkit.errors import EvalkitError
from evalkit.files import IMAGE_EXTENSIONS, is_image_file, load_image
from evalkit.methods.translator import TranslationOutput, Translator

__all__ = ["OutputsTranslator", "build_outputs"]

def _image_format(path: Path) -> str:
    """The protocol's name of a file's image format: ``jpeg`` for .jpg/.jpeg, ``tiff`` for .tif/.tiff, else the extension."""
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "jpeg", "tif": "tiff"}.get(ext, ext)


class OutputsTranslator(Translator):
    """Translate by reading ``<folder>/<name>.<png|jpg|...>`` for every sample name."""

    trainable = False

    def __init__(self, folder: str | Path, variant: str = "outputs"):
        super().__init__()
        self.variant = variant
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise EvalkitError(f"outputs folder {self.folder} does not exist; point --folder at the saved outputs",
                               path=self.folder)
        self.files: dict[str, Path] = {}
        for p in sorted(self.folder.iterdir()):
            if p.is_file() and is_image_file(p):
                if p.stem in self.files:
                    raise EvalkitError(f"two outputs named {p.stem!r} in {self.folder} ({self.files[p.stem].name}, {p.name}); keep one",
                                       path=self.folder)
                self.files[p.stem] = p
        if not self.files:
            raise EvalkitError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) in {self.folder}", path=self.folder)
        formats = sorted({_image_format(p) for p in self.files.values()})
        self.protocol_meta = {"source_folder": str(self.folder), "image_format": formats[0] if len(formats) == 1 else "mixed",
                              "source_formats": formats}
        self.warped_dir = self.folder / "warped" if (self.folder / "warped").is_dir() else None

    def _read(self, name: str, size: tuple[int, int], folder: Path | None = None) -> torch.Tensor:
        if folder is None:
            path = self.files.get(name)
            if path is None:
                raise EvalkitError(f"no output for sample {name!r} in {self.folder} (expected {name}.png or .jpg); "
                                   "export one image per sample named by the sample name", path=self.folder)
        else:
            path = next((folder / f"{name}{ext}" for ext in IMAGE_EXTENSIONS if (folder / f"{name}{ext}").is_file()),
                        None)
            if path is None:
                return None
        arr = load_image(path)
        if arr.shape[:2] != tuple(size):
            raise EvalkitError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but the dataset is {size[1]}x{size[0]}; "
                               "evaluate at the outputs' resolution (--size)", path=path)
        return torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1.0

    @torch.no_grad()
    def translate(self, batch) -> TranslationOutput:
        size = tuple(batch.image.shape[-2:])
        images = torch.stack([self._read(n, size) for n in batch.name])
        warped = None
        if self.warped_dir is not None:
            found = [self._read(n, size, self.warped_dir) for n in batch.name]
            if all(w is not None for w in found):
                warped = torch.stack(found)
        return TranslationOutput(images, warped, None, {"source": [str(self.files[n]) for n in batch.name]})


def build_outputs(config, cond_channels: int, variant: str = "outputs", *, folder: str | Path | None = None,
                  cocosnet_checkout: str | Path | None = None, cocosnet_checkpoint: str | Path | None = None,
                  cocosnet_dataset: str | None = None) -> Translator:
    """Registry builder: a folder of saved outputs, or the official CoCosNet code + checkpoint
    (:func:`evalkit.baselines.official.official`)."""
    if cocosnet_checkout is not None or cocosnet_checkpoint is not None:
        if cocosnet_checkout is None or cocosnet_checkpoint is None or cocosnet_dataset is None:
            raise EvalkitError("the official CoCosNet wrapper needs cocosnet_checkout, cocosnet_checkpoint and cocosnet_dataset")
        from evalkit.baselines.official import official

        return official("cocosnet", cocosnet_dataset, cocosnet_checkout, cocosnet_checkpoint, variant=variant)
    if folder is None:
        raise EvalkitError("variant 'outputs' needs folder=<directory of saved outputs> (CLI: --folder)")
    return OutputsTranslator(folder, variant)


def _register() -> None:
    from evalkit.methods.registry import register_variant

    register_variant("outputs", build_outputs, trainable=False,
                     description="saved outputs of any external method, read from a folder by sample name")


_register()
