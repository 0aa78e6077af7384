"""Released checkpoints of the baselines, run by their own code: NVlabs/SPADE, microsoft/CoCosNet,
microsoft/CoCosNet-v2 and fnzhan/UNITE.

``official(code, release, checkout, checkpoint_dir)`` builds the released model from the user's
checkout of that repository (``options.test_options.TestOptions().parse()`` over the flags of
that release's test command, then ``models.pix2pix_model.Pix2PixModel(opt)``, as every one of
the four ``test.py`` does) and loads each network file of the checkpoint *strictly*, itself:
the repositories' own ``util.load_network`` prints "not find model" and goes on with random
weights when a file is missing (CoCosNet, CoCosNet-v2, UNITE) and retries with ``strict=False``
on a mismatch, which would turn a wrong checkpoint into a silently wrong number. Every missing
piece (not a checkout of that repository, a checkpoint file, an unknown release, a CUDA-only
code on a CPU machine) is one :class:`EvalkitError` naming it and how to get it; the checkpoint
files' sha256 are recorded (``protocol_meta["checkpoint_sha256"]``, written to the outputs'
``meta.json``).

UNITE's released generator ends ``SEACEGenerator.forward`` with a leftover debugging
``print (1/0)`` (fnzhan/UNITE ``models/networks/generator.py``, commit 2baf884), so every forward
pass raises ZeroDivisionError. evalkit does not edit the checkout: while importing that one file
it compiles the source with exactly that statement replaced by ``pass`` (same line numbers) and
records the line in ``protocol_meta["patched"]``; a checkout without the statement is used as is.

Flags per release are the README / test-script commands, without the machine's own paths and
GPU choices (``--dataroot``, ``--checkpoints_dir``, ``--gpu_ids``, ``--nThreads``, ``--batchSize``),
which evalkit sets. ``evalkit official list`` prints them; ``evalkit official check`` builds and
loads one; ``evalkit infer --official CODE --release NAME --checkout DIR --checkpoint DIR`` writes
its outputs in the outputs layout.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from evalkit.errors import EvalkitError
from evalkit.methods.translator import TranslationOutput, Translator

__all__ = ["RELEASED", "ReleasedCode", "OfficialTranslator", "official", "checkpoint_manifest"]

_PACKAGES = {"models", "options", "util", "data", "trainers"}  # the repositories' top-level packages


def _class_index(label: torch.Tensor) -> torch.Tensor:
    return label[:, None].float()


def _spade_ade20k_labels(label: torch.Tensor) -> torch.Tensor:
    """NVlabs/SPADE ``data/ade20k_dataset.py`` ``postprocess``: ``label - 1``, and -1 (ADE's
    "other") becomes 150, the don't-care class."""
    lab = label.long() - 1
    lab[lab == -1] = 150
    return lab[:, None].float()


def _spade_coco_labels(label: torch.Tensor) -> torch.Tensor:
    """NVlabs/SPADE ``data/pix2pix_dataset.py``: the unknown label 255 becomes ``label_nc`` (182)."""
    lab = label.long().clone()
    lab[lab == 255] = 182
    return lab[:, None].float()


@dataclass(frozen=True)
class Release:
    """One released checkpoint: its test flags, the evalkit dataset it was trained on, and how the
    batch's label map becomes the code's ``label`` input."""

    flags: tuple[str, ...]
    dataset: str
    labels: Callable[[torch.Tensor], torch.Tensor] = _class_index
    cuda_only: str = ""  # why this release's code cannot run on a CPU (empty: it can)


@dataclass(frozen=True)
class ReleasedCode:
    """One repository's released code: what proves a checkout, its network files, its releases,
    and how its ``Pix2PixModel(data, mode="inference")`` is fed and read."""

    key: str
    repo: str
    markers: tuple[str, ...]
    nets: tuple[str, ...]
    releases: dict[str, Release]
    exemplar_based: bool
    notes: str = ""
    patches: tuple[tuple[str, str], ...] = ()  # (module file, regex of a whole statement line replaced by `pass`)
    epoch: str = "latest"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}"


_V2_CUDA = ("CoCosNet-v2's options set CUDA_VISIBLE_DEVICES from --gpu_ids and map -1 to GPU 0 "
            "(options/base_options.py), and its PatchMatch calls .get_device(): it runs on CUDA only")
_UNITE_CUDA = ("UNITE's preprocess_input calls .cuda() unconditionally for this dataset mode "
               "(models/pix2pix_model.py): it runs on CUDA only")

RELEASED: dict[str, ReleasedCode] = {
    "spade": ReleasedCode(
        key="spade", repo="NVlabs/SPADE",
        markers=("models/pix2pix_model.py", "options/test_options.py", "models/networks/generator.py"),
        nets=("G",), exemplar_based=False,
        notes="the released checkpoints are label-only (no --use_vae, no net_E): the exemplar is ignored and "
              "LPIPS diversity is 0 by construction; the papers' SPADE rows inject an exemplar style",
        releases={
            "ade20k": Release(("--name", "ade20k_pretrained", "--dataset_mode", "ade20k"), "ade20k",
                              _spade_ade20k_labels),
            "coco": Release(("--name", "coco_pretrained", "--dataset_mode", "coco"), "cocostuff", _spade_coco_labels),
        }),
    "cocosnet": ReleasedCode(
        key="cocosnet", repo="microsoft/CoCosNet",
        markers=("models/pix2pix_model.py", "options/test_options.py"),
        nets=("G", "Corr"), exemplar_based=True,
        releases={
            "ade20k": Release(("--dataset_mode", "ade20k", "--use_attention", "--maskmix", "--noise_for_mask",
                               "--warp_mask_losstype", "direct", "--PONO", "--PONO_C", "--which_epoch", "90"), "ade20k"),
            "celebahq": Release(("--dataset_mode", "celebahq", "--use_attention", "--maskmix", "--warp_mask_losstype",
                                 "direct", "--PONO", "--PONO_C", "--warp_bilinear", "--adaptor_kernel", "4"), "celebahq"),
            "celebahqedge": Release(("--dataset_mode", "celebahqedge", "--use_attention", "--maskmix", "--PONO",
                                     "--PONO_C", "--warp_bilinear", "--adaptor_kernel", "4"), "celebahq-edge"),
            "deepfashion": Release(("--dataset_mode", "deepfashion", "--use_attention", "--PONO", "--PONO_C",
                                    "--warp_bilinear", "--no_flip", "--warp_patch", "--video_like",
                                    "--adaptor_kernel", "4"), "deepfashion"),
        }),
    "cocosnet-v2": ReleasedCode(
        key="cocosnet-v2", repo="microsoft/CoCosNet-v2",
        markers=("models/pix2pix_model.py", "options/test_options.py", "models/networks/patch_match.py"),
        nets=("G", "Corr"), exemplar_based=True,
        notes="512 px (hard-coded in its generator); the released latest_net_Corr.pth has duplicate entries in its "
              "zip (CoCosNet-v2 issues 3, 16, 26): re-save it with the README's fix if torch.load refuses it",
        releases={
            "deepfashionHD": Release(("--name", "deepfashionHD", "--dataset_mode", "deepfashionHD", "--PONO",
                                      "--PONO_C", "--no_flip", "--netCorr", "NoVGGHPM", "--nef", "32", "--amp",
                                      "--display_winsize", "512", "--iteration_count", "5", "--load_size", "512",
                                      "--crop_size", "512"), "deepfashion", cuda_only=_V2_CUDA),
        }),
    "unite": ReleasedCode(
        key="unite", repo="fnzhan/UNITE",
        markers=("models/pix2pix_model.py", "options/test_options.py", "models/networks/generator.py",
                 "models/networks/correspondence.py"),
        nets=("G", "Corr"), exemplar_based=True,
        notes="the released generator's SEACEGenerator.forward ends in a leftover `print (1/0)` (commit 2baf884): "
              "evalkit compiles that file with the statement replaced by `pass` and records the line",
        patches=(("models/networks/generator.py", r"print\s*\(\s*1\s*/\s*0\s*\)|1\s*/\s*0"),),
        releases={
            "ade20k": Release(("--name", "ade20k", "--dataset_mode", "ade20k", "--correspondence", "ot",
                               "--use_attention", "--maskmix", "--warp_mask_losstype", "direct", "--PONO", "--PONO_C",
                               "--use_coordconv", "--adaptor_nonlocal"), "ade20k"),
            "celebahqedge": Release(("--name", "celebahqedge", "--dataset_mode", "celebahqedge", "--correspondence",
                                     "ot", "--use_attention", "--maskmix", "--PONO", "--PONO_C", "--warp_bilinear",
                                     "--ot_weight"), "celebahq-edge", cuda_only=_UNITE_CUDA),
            "deepfashion": Release(("--name", "deepfashion", "--dataset_mode", "deepfashion", "--correspondence", "ot",
                                    "--use_attention", "--PONO", "--PONO_C", "--warp_bilinear", "--no_flip",
                                    "--video_like", "--ot_weight"), "deepfashion", cuda_only=_UNITE_CUDA),
            "coco": Release(("--name", "coco", "--dataset_mode", "coco", "--correspondence", "ot", "--blur", "0.01",
                             "--use_attention", "--maskmix", "--warp_mask_losstype", "direct", "--PONO", "--PONO_C"),
                            "cocostuff"),
        }),
}


def code(key: str) -> ReleasedCode:
    if key not in RELEASED:
        raise EvalkitError(f"no released code {key!r}; choose one of {', '.join(RELEASED)} (`evalkit official list`)")
    return RELEASED[key]


def release(c: ReleasedCode, name: str) -> Release:
    if name not in c.releases:
        raise EvalkitError(f"{c.repo} has no released checkpoint {name!r}; choose one of {', '.join(c.releases)}")
    return c.releases[name]


def _epoch(c: ReleasedCode, r: Release) -> str:
    flags = list(r.flags)
    return flags[flags.index("--which_epoch") + 1] if "--which_epoch" in flags else c.epoch


def checkpoint_files(c: ReleasedCode, r: Release, checkpoint_dir: Path) -> dict[str, Path]:
    """``{net: <checkpoint_dir>/<epoch>_net_<net>.pth}`` the release needs."""
    return {net: checkpoint_dir / f"{_epoch(c, r)}_net_{net}.pth" for net in c.nets}


def checkpoint_manifest(files: dict[str, Path]) -> dict[str, str]:
    """``{file name: sha256}`` of a checkpoint's network files."""
    from evalkit.weights import file_sha256

    return {p.name: file_sha256(p) for p in files.values()}


def _check_pieces(c: ReleasedCode, r: Release, checkout: Path, checkpoint_dir: Path, device: torch.device) -> dict:
    missing = [m for m in c.markers if not (checkout / m).is_file()]
    if missing:
        raise EvalkitError(f"{checkout} is not a {c.repo} checkout (missing {', '.join(missing)}); "
                           f"git clone {c.url}", path=checkout)
    files = checkpoint_files(c, r, checkpoint_dir)
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        raise EvalkitError(f"{c.repo} checkpoint file(s) not found: {', '.join(absent)}; download the released "
                           f"checkpoint (the {c.repo} README) and unpack it into {checkpoint_dir}", path=checkpoint_dir)
    if r.cuda_only and device.type != "cuda":
        raise EvalkitError(f"{c.repo} {r.flags[r.flags.index('--dataset_mode') + 1]}: {r.cuda_only}; "
                           "run with --device cuda on a machine with a GPU")
    return files


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    """Compiles one file of the checkout with whole-line statements matching ``pattern`` replaced by
    ``pass`` (indentation and line numbers kept); the lines replaced are appended to ``patched``."""

    def __init__(self, fullname, path, pattern: str, patched: list[str], rel: str):
        super().__init__(fullname, path)
        self.pattern, self.patched, self.rel = re.compile(rf"^(\s*)(?:{pattern})\s*(#.*)?$"), patched, rel

    def get_data(self, path):
        data = super().get_data(path)
        if not str(path).endswith(".py"):
            return data
        lines = data.decode("utf-8").split("\n")
        for i, line in enumerate(lines):
            m = self.pattern.match(line)
            if m:
                lines[i] = f"{m.group(1)}pass"
                self.patched.append(f"{self.rel}:{i + 1}: `{line.strip()}` → `pass`")
        return "\n".join(lines).encode("utf-8")

    def path_stats(self, path):  # never reuse a cached .pyc of the unpatched file
        raise OSError


class _PatchFinder(importlib.abc.MetaPathFinder):
    def __init__(self, checkout: Path, patches, patched: list[str]):
        self.targets = {".".join(Path(rel).with_suffix("").parts): (checkout / rel, pattern, rel)
                        for rel, pattern in patches}
        self.patched = patched

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.targets:
            return None
        file, pattern, rel = self.targets[fullname]
        loader = _PatchingLoader(fullname, str(file), pattern, self.patched, rel)
        return importlib.util.spec_from_file_location(fullname, str(file), loader=loader)


@contextlib.contextmanager
def _checkout_on_path(checkout: Path, patches=(), patched: list[str] | None = None):
    """The checkout first on ``sys.path`` (and ``sys.argv`` restorable) while its code is imported
    and built; afterwards its top-level packages leave ``sys.modules`` again."""
    saved_path, saved_argv, saved_mods = list(sys.path), list(sys.argv), set(sys.modules)
    for name in [n for n in sys.modules if n.split(".")[0] in _PACKAGES]:
        del sys.modules[name]  # another checkout's packages of the same names
    sys.path.insert(0, str(checkout))
    finder = _PatchFinder(checkout, patches, patched if patched is not None else [])
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.path[:] = saved_path
        sys.argv[:] = saved_argv
        for name in set(sys.modules) - saved_mods:
            if name.split(".")[0] in _PACKAGES:
                del sys.modules[name]


def _load_strictly(module: torch.nn.Module, path: Path, flags) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — a corrupt or foreign file, named
        raise EvalkitError(f"{path} cannot be read as a PyTorch state dict ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''})", path=path) from err
    expected, got = set(module.state_dict()), set(state)
    if expected != got:
        raise EvalkitError(f"{path} does not match the model built with flags {' '.join(flags)}: "
                           f"missing {sorted(expected - got)[:5]}, unexpected {sorted(got - expected)[:5]}", path=path)
    module.load_state_dict(state, strict=True)


class OfficialTranslator(Translator):
    """A released model run by its own code on evalkit batches (inference only)."""

    trainable = False

    def __init__(self, model, c: ReleasedCode, name: str, meta: dict, device: torch.device, variant: str):
        super().__init__()
        self.variant, self.model, self.code, self.release_name = variant, model, c, name
        self.release = c.releases[name]
        self.exemplar_based = c.exemplar_based
        self.run_device = device
        self.protocol_meta = meta

    def _data(self, batch) -> dict:
        if batch.label is None:
            raise EvalkitError(f"{self.code.repo} {self.release_name} needs label maps; the dataset gives none")
        dev = self.run_device
        data = {"label": self.release.labels(batch.label).to(dev), "image": batch.image.to(dev),
                "path": list(batch.name)}
        if self.code.key == "spade":
            data["instance"] = torch.zeros(len(batch))
            return data
        ref_label = batch.exemplar_label if batch.exemplar_label is not None else batch.label
        label_ref = self.release.labels(ref_label).to(dev)
        if self.code.key == "unite":
            # UNITE casts label_ref to long only in its GPU branch, so on a CPU its scatter_ needs it as long
            data.update(ref=batch.exemplar.to(dev), label_ref=label_ref if dev.type == "cuda" else label_ref.long(),
                        self_ref=torch.zeros_like(batch.exemplar).to(dev))
        else:
            data.update(ref=batch.exemplar.to(dev), label_ref=label_ref, self_ref=torch.zeros(len(batch), device=dev))
        return data

    @torch.no_grad()
    def translate(self, batch) -> TranslationOutput:
        out = self.model(self._data(batch), mode="inference")
        if torch.is_tensor(out):
            return TranslationOutput(out.float().cpu(), None)
        warped = out.get("warp_tmp", out.get("warp_out"))
        if isinstance(warped, (list, tuple)):
            warped = warped[-1]
        return TranslationOutput(out["fake_image"].float().cpu(), None if warped is None else warped.float().cpu())


def official(code_key: str, release_name: str, checkout: str | Path, checkpoint_dir: str | Path, *,
             device: str | torch.device = "cpu", variant: str | None = None) -> OfficialTranslator:
    """The released model ``release_name`` of ``code_key`` (a key of :data:`RELEASED`), built from
    ``checkout`` with that release's flags and loaded strictly from ``checkpoint_dir``."""
    from evalkit.devices import resolve_device

    c = code(code_key)
    r = release(c, release_name)
    checkout, checkpoint_dir = Path(checkout).expanduser(), Path(checkpoint_dir).expanduser()
    dev = resolve_device(device)
    files = _check_pieces(c, r, checkout, checkpoint_dir, dev)
    manifest = checkpoint_manifest(files)
    flags = list(r.flags)
    if "--name" in flags:  # evalkit's folder, not the README's
        i = flags.index("--name")
        del flags[i:i + 2]
    argv = ["test.py", "--name", checkpoint_dir.name, "--checkpoints_dir", str(checkpoint_dir.parent),
            "--gpu_ids", "0" if dev.type == "cuda" else "-1", "--nThreads", "0", *flags]
    patched: list[str] = []
    with _checkout_on_path(checkout, c.patches, patched):
        sys.argv[:] = argv
        try:
            opt = importlib.import_module("options.test_options").TestOptions().parse()
            model = importlib.import_module("models.pix2pix_model").Pix2PixModel(opt)
        except (ImportError, AttributeError, RuntimeError, SystemExit, TypeError, ValueError) as err:
            raise EvalkitError(f"the {c.repo} code in {checkout} failed to build release {release_name} with flags "
                               f"{' '.join(flags)}: {type(err).__name__}: {err}", path=checkout) from err
    for net, path in files.items():
        module = getattr(model, f"net{net}", None)
        if module is None:
            raise EvalkitError(f"the {c.repo} model has no net{net}; is {checkout} the official code?", path=checkout)
        _load_strictly(module, path, flags)
    model.eval()
    if hasattr(model, "to"):
        model.to(dev)
    meta = {"source": f"{c.repo} released checkpoint {release_name}", "official_code": c.key,
            "release": release_name, "flags": flags, "checkout": str(checkout),
            "checkpoint_sha256": manifest, "patched": patched or None, "notes": c.notes or None}
    return OfficialTranslator(model, c, release_name, meta, dev, variant or f"official/{c.key}")


def listing() -> list[dict]:
    """What ``evalkit official list`` prints: every released code and checkpoint with its flags."""
    rows = []
    for c in RELEASED.values():
        for name, r in c.releases.items():
            rows.append({"code": c.key, "repo": c.repo, "release": name, "dataset": r.dataset,
                         "files": [f"{_epoch(c, r)}_net_{n}.pth" for n in c.nets], "flags": list(r.flags),
                         "cuda_only": bool(r.cuda_only), "notes": c.notes})
    return rows
