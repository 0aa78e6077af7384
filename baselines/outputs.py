"""Join a leaderboard with any external method: translators that are not trained here.

``outputs`` reads another model's saved outputs from a folder, matching files to
samples by name (``<folder>/<sample name>.png|.jpg|...``, any of
:data:`evalkit.files.IMAGE_EXTENSIONS`); it records which image format the files were
in (``protocol_meta["image_format"]``: JPEG outputs score differently from PNG ones,
so the protocol must say so). Optionally a ``warped/`` sub-folder supplies warped
exemplars by the same names.

``official_cocosnet(checkout, checkpoint_dir, dataset)`` wraps the official CoCosNet code
(microsoft/CoCosNet) and a released checkpoint: the model is built with the flag set
that checkpoint was trained with (from the official README's test commands), and the
generator and correspondence weights are then loaded *strictly*; any missing piece or
mismatching key is a one-line :class:`EvalkitError`.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

import torch

from evalkit.errors import EvalkitError
from evalkit.files import IMAGE_EXTENSIONS, is_image_file, load_image
from evalkit.methods.translator import TranslationOutput, Translator

__all__ = ["OutputsTranslator", "OfficialCoCosNet", "official_cocosnet", "COCOSNET_FLAGS"]

# Flag sets of the released CoCosNet checkpoints (official README, "Inference Using Pretrained Model").
COCOSNET_FLAGS = {
    "ade20k": ["--dataset_mode", "ade20k", "--use_attention", "--maskmix", "--noise_for_mask",
               "--warp_mask_losstype", "direct", "--PONO", "--PONO_C", "--which_epoch", "90"],
    "celebahq": ["--dataset_mode", "celebahq", "--use_attention", "--maskmix", "--warp_mask_losstype", "direct",
                 "--PONO", "--PONO_C", "--warp_bilinear", "--adaptor_kernel", "4"],
    "celebahqedge": ["--dataset_mode", "celebahqedge", "--use_attention", "--maskmix", "--PONO", "--PONO_C",
                     "--warp_bilinear", "--adaptor_kernel", "4"],
    "deepfashion": ["--dataset_mode", "deepfashion", "--use_attention", "--PONO", "--PONO_C", "--warp_bilinear",
                    "--no_flip", "--warp_patch", "--video_like", "--adaptor_kernel", "4"],
}


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


@contextlib.contextmanager
def _official_import_path(checkout: Path):
    saved_path, saved_argv, saved_mods = list(sys.path), list(sys.argv), set(sys.modules)
    sys.path.insert(0, str(checkout))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        sys.argv[:] = saved_argv
        for name in set(sys.modules) - saved_mods:  # the checkout's top-level packages (models, options, util, data)
            if name.split(".")[0] in {"models", "options", "util", "data", "trainers"}:
                del sys.modules[name]


class OfficialCoCosNet(Translator):
    """The official CoCosNet model, built from its own code with the checkpoint's flags and loaded strictly."""

    trainable = False

    def __init__(self, model, dataset: str, variant: str = "outputs"):
        super().__init__()
        self.variant = variant
        self.model = model
        self.dataset = dataset
        self.protocol_meta = {"source": "microsoft/CoCosNet official checkpoint", "flags": COCOSNET_FLAGS[dataset]}

    @torch.no_grad()
    def translate(self, batch) -> TranslationOutput:
        label = batch.cond if batch.label is None else batch.label[:, None].float()
        label_ref = batch.exemplar_cond if batch.exemplar_label is None else batch.exemplar_label[:, None].float()
        data = {"label": label, "image": batch.image, "ref": batch.exemplar, "label_ref": label_ref,
                "self_ref": torch.zeros(len(batch)), "path": list(batch.name)}
        out = self.model(data, mode="inference")
        warped = out.get("warp_out")
        if isinstance(warped, (list, tuple)):
            warped = warped[-1]
        return TranslationOutput(out["fake_image"].float().cpu(), None if warped is None else warped.float().cpu())


def official_cocosnet(checkout: str | Path, checkpoint_dir: str | Path, dataset: str, variant: str = "outputs") -> OfficialCoCosNet:
    """Build the official CoCosNet for ``dataset`` from ``checkout`` and load ``checkpoint_dir`` strictly."""
    checkout, checkpoint_dir = Path(checkout), Path(checkpoint_dir)
    if dataset not in COCOSNET_FLAGS:
        raise EvalkitError(f"no official CoCosNet checkpoint flag set for dataset {dataset!r}; choose one of {sorted(COCOSNET_FLAGS)}")
    needed = [checkout / "models" / "pix2pix_model.py", checkout / "options" / "test_options.py"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise EvalkitError(f"{checkout} is not a microsoft/CoCosNet checkout (missing {', '.join(missing)}); "
                           "git clone https://github.com/microsoft/CoCosNet", path=checkout)
    flags = list(COCOSNET_FLAGS[dataset])
    epoch = flags[flags.index("--which_epoch") + 1] if "--which_epoch" in flags else "latest"
    files = {net: checkpoint_dir / f"{epoch}_net_{net}.pth" for net in ("G", "Corr")}
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        raise EvalkitError(f"official CoCosNet checkpoint files not found: {', '.join(absent)}; download the "
                           f"{dataset} checkpoint from the CoCosNet README into {checkpoint_dir}", path=checkpoint_dir)
    argv = ["test.py", "--name", checkpoint_dir.name, "--checkpoints_dir", str(checkpoint_dir.parent),
            "--gpu_ids", "0" if torch.cuda.is_available() else "-1", "--nThreads", "0", *flags]
    with _official_import_path(checkout):
        sys.argv[:] = argv
        try:
            opt = importlib.import_module("options.test_options").TestOptions().parse()
            model = importlib.import_module("models.pix2pix_model").Pix2PixModel(opt)
        except (ImportError, AttributeError, RuntimeError, SystemExit) as err:
            raise EvalkitError(f"the CoCosNet code in {checkout} failed to build the {dataset} model with flags "
                               f"{' '.join(flags)}: {err}", path=checkout) from err
    for net, path in files.items():
        module = getattr(model, f"net{net}", None)
        if module is None:
            raise EvalkitError(f"the CoCosNet model has no net{net}; is {checkout} the official code?", path=checkout)
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected, got = set(module.state_dict()), set(state)
        if expected != got:
            raise EvalkitError(
                f"{path} does not match the model built with flags {' '.join(flags)}: "
                f"missing {sorted(expected - got)[:5]}, unexpected {sorted(got - expected)[:5]}", path=path)
        module.load_state_dict(state, strict=True)
    model.eval()
    return OfficialCoCosNet(model, dataset, variant)


def build_outputs(config, cond_channels: int, variant: str = "outputs", *, folder: str | Path | None = None,
                  cocosnet_checkout: str | Path | None = None, cocosnet_checkpoint: str | Path | None = None,
                  cocosnet_dataset: str | None = None) -> Translator:
    """Registry builder: a folder of saved outputs, or the official CoCosNet code + checkpoint."""
    if cocosnet_checkout is not None or cocosnet_checkpoint is not None:
        if cocosnet_checkout is None or cocosnet_checkpoint is None or cocosnet_dataset is None:
            raise EvalkitError("the official CoCosNet wrapper needs cocosnet_checkout, cocosnet_checkpoint and cocosnet_dataset")
        return official_cocosnet(cocosnet_checkout, cocosnet_checkpoint, cocosnet_dataset, variant)
    if folder is None:
        raise EvalkitError("variant 'outputs' needs folder=<directory of saved outputs> (CLI: --folder)")
    return OutputsTranslator(folder, variant)


def _register() -> None:
    from evalkit.methods.registry import register_variant

    register_variant("outputs", build_outputs, trainable=False,
                     description="saved outputs of any external method, read from a folder by sample name")


_register()
