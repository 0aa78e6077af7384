"""Training and inference loops shared by every translator.

``train`` runs ``steps`` optimisation steps (one G step + one D step each) over a
dataset in a seeded, reproducible order: step ``s`` uses the ``s mod E``-th batch of the
permutation of epoch ``s div E`` (``E = len(dataset) // batch_size``) drawn from
``seed`` and the epoch number. Checkpoints (``OUT/last.pt``) hold the model, both Adam
states, the torch / numpy / python RNG states, the step and the loss history; they are
written through :func:`evalkit.files.atomic_path` (temp file in the same folder, renamed
into place, plain permissions), so a crash never leaves half a checkpoint. ``resume=True`` continues from ``OUT/last.pt``: the loss at
step ``k + 1`` equals the one an uninterrupted run gets.

``infer`` writes the outputs layout (:class:`evalkit.layout.OutputsLayout`)::

    OUT/inputs/{real,exemplar,cond}/<name>.png, OUT/inputs/pairs.csv
    OUT/<variant_dir>/images/<name>.<png|jpg>, OUT/<variant_dir>/warped/<name>.png, OUT/<variant_dir>/meta.json
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evalkit.data import collate, to_uint8_image, visualise_cond
from evalkit.devices import resolve_device
from evalkit.errors import EvalkitError
from evalkit.files import atomic_path, check_writable, save_png, staging_dir, sweep_temp_files, write_atomic
from evalkit.layout import PAIRS_COLUMNS, OutputsLayout, install_outputs
from evalkit.methods.registry import build_translator
from evalkit.methods.translator import Translator

__all__ = ["train", "infer", "load_checkpoint", "save_checkpoint", "batch_indices", "set_epoch", "CHECKPOINT", "IMAGE_FORMATS"]

CHECKPOINT = "last.pt"
IMAGE_FORMATS = {"png": ("png", {}), "jpeg": ("jpg", {"quality": 95, "subsampling": 0})}


# -- reproducible data order ---------------------------------------------------------------
def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Dataset indices of the batch used at ``step`` (0-based): seeded per-epoch permutations, last partial batch dropped."""
    if n < batch_size:
        raise EvalkitError(f"dataset has {n} samples, fewer than batch size {batch_size}; lower --batch-size")
    per_epoch = n // batch_size
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[i * batch_size:(i + 1) * batch_size].tolist()


def set_epoch(dataset, epoch: int) -> None:
    """Tell ``dataset`` (or the dataset a ``Subset`` wraps) that epoch ``epoch`` starts, so that it
    re-draws its per-epoch randomness (crops, flips, exemplar kind: CoCosNet's per-draw 70/30)."""
    target = dataset
    while target is not None and not hasattr(target, "set_epoch"):
        target = getattr(target, "dataset", None)
    if target is not None:
        target.set_epoch(int(epoch))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(translator: Translator, path: str | Path, *, step: int, history: list[dict] | None = None,
                    extra: dict | None = None) -> Path:
    """Atomically write model + optimiser + RNG state + step to ``path`` (:func:`evalkit.files.atomic_path`)."""
    path = Path(path)
    payload = {
        "format": "evalkit-translator/1",
        "build_args": getattr(translator, "build_args", None),
        "variant": translator.variant,
        "step": int(step),
        "model": translator.state_dict(),
        "optimizers": translator.optimizer_state(),
        "rng": _rng_state(),
        "history": list(history or []),
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise EvalkitError(f"checkpoint not found: {path}; train first with `evalkit train --out {path.parent}`", path=path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise EvalkitError(f"cannot read checkpoint {path} ({err}); it is corrupt or not an evalkit checkpoint", path=path) from err
    if not isinstance(payload, dict) or payload.get("format") != "evalkit-translator/1":
        raise EvalkitError(f"{path} is not an evalkit translator checkpoint", path=path)
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Translator:
    """Rebuild the translator a checkpoint was saved from and load its weights strictly."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    payload = _read_checkpoint(path)
    args = payload["build_args"]
    if not args:
        raise EvalkitError(f"{path} does not record how its translator was built", path=path)
    translator = build_translator(args["variant"], cond_channels=args["cond_channels"], preset=args["preset"],
                                  seed=args["seed"], **args["overrides"])
    translator.load_state_dict(payload["model"])
    return _to_device(translator, device)


def _to_device(translator: Translator, device) -> Translator:
    device = torch.device(device)
    if hasattr(translator, "prepare_device"):
        return translator.prepare_device(device)
    return translator.to(device)


# -- training ------------------------------------------------------------------------------
def train(translator: Translator, dataset, *, steps: int, out_dir: str | Path, resume: bool = False,
          batch_size: int = 4, seed: int = 0, progress: bool = True, checkpoint_every: int = 100,
          log_every: int = 10, device: str | torch.device | None = None) -> Path:
    """Train ``translator`` for ``steps`` total steps on ``dataset``; returns ``OUT/last.pt``.

    Each epoch (``len(dataset) // batch_size`` steps) starts with :func:`set_epoch`, so a
    dataset with per-epoch draws (``PairedDataset``, ``shapes``) serves new crops, flips and
    exemplar kinds every epoch. With ``resume=True`` training continues from ``OUT/last.pt``
    (same variant) up to ``steps`` in total. Checkpoints every ``checkpoint_every`` steps and
    at the end.
    """
    out_dir = Path(out_dir)
    ckpt = out_dir / CHECKPOINT
    if steps < 1:
        raise EvalkitError(f"steps must be >= 1, got {steps}")
    if not getattr(translator, "trainable", True):
        raise EvalkitError(f"variant {translator.variant!r} is not trainable")
    device = resolve_device(device)
    translator = _to_device(translator, device)
    n = len(dataset)
    batch_indices(n, batch_size, seed, 0)  # validates sizes before anything is written
    start, history = 0, []
    if resume:
        payload = _read_checkpoint(ckpt)
        if payload["variant"] != translator.variant:
            raise EvalkitError(f"{ckpt} was trained as {payload['variant']!r}, not {translator.variant!r}", path=ckpt)
        translator.load_state_dict(payload["model"])
        translator.load_optimizer_state(payload["optimizers"])
        _set_rng_state(payload["rng"])
        start, history = int(payload["step"]), list(payload["history"])
        if start >= steps:
            return ckpt
    elif ckpt.exists():
        raise EvalkitError(f"{ckpt} already exists; pass --resume to continue it or choose another --out", path=ckpt)
    else:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
    meta = {"variant": translator.variant, "batch_size": batch_size, "seed": seed,
            "dataset": getattr(dataset, "name", type(dataset).__name__),
            "perceptual_pretrained": bool(getattr(getattr(translator, "vgg", None), "pretrained", False)),
            "perceptual_sha256": getattr(getattr(translator, "vgg", None), "weights_sha256", None)}
    t0 = time.perf_counter()
    epoch = None
    for step in range(start, steps):
        if step // (n // batch_size) != epoch:  # the epoch of batch_indices: a new permutation, new draws
            epoch = step // (n // batch_size)
            set_epoch(dataset, epoch)
        batch = collate([dataset[i] for i in batch_indices(n, batch_size, seed, step)])
        losses = translator.train_step(batch)
        bad = [k for k, v in losses.items() if not np.isfinite(v)]
        if bad:
            save_checkpoint(translator, out_dir / "diverged.pt", step=step, history=history, extra=meta)
            raise EvalkitError(f"training diverged at step {step + 1}: non-finite {bad}; state saved to {out_dir / 'diverged.pt'}")
        history.append({"step": step + 1, **losses})
        done = step + 1
        if progress and (done % log_every == 0 or done == steps):
            rate = (time.perf_counter() - t0) / (done - start)
            shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
            print(f"[{translator.variant}] step {done}/{steps} ({rate:.2f}s/step) {shown}", file=sys.stderr, flush=True)
        if done % checkpoint_every == 0 or done == steps:
            save_checkpoint(translator, ckpt, step=done, history=history, extra=meta)
    write_atomic(out_dir / "losses.json", json.dumps(history, indent=1))
    return ckpt


# -- inference -----------------------------------------------------------------------------
def _save_image(array: np.ndarray, path: Path, image_format: str = "png") -> None:
    if image_format == "png":
        save_png(array, path)
        return
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", **IMAGE_FORMATS[image_format][1])


def check_compatible(translator: Translator, dataset) -> None:
    """Refuse, before any work, a translator that cannot translate ``dataset`` faithfully: a
    network built for another number of condition channels (it would crash mid-way), or one
    that generates another image size than the dataset's ground truth (its outputs would be
    scored beside real images of another size). Translators without a config (reference
    outputs, saved outputs) follow the dataset by construction."""
    config, args = getattr(translator, "config", None), getattr(translator, "build_args", None) or {}
    if config is None or not hasattr(config, "size"):
        return
    built_for = args.get("cond_channels", getattr(translator, "cond_channels", None))
    ds_channels, ds_name = getattr(dataset, "cond_channels", None), getattr(dataset, "name", type(dataset).__name__)
    if built_for is not None and ds_channels is not None and int(built_for) != int(ds_channels):
        raise EvalkitError(f"{translator.variant} was built for {built_for}-channel conditions but dataset {ds_name!r} "
                           f"gives {ds_channels}-channel ones; use a checkpoint trained on {ds_name}")
    if len(dataset) == 0:
        raise EvalkitError(f"dataset {ds_name!r} has no samples to translate")
    h, w = dataset[0].image.shape[-2:]
    if (h, w) != (config.size, config.size):
        raise EvalkitError(f"{translator.variant} generates {config.size}x{config.size} images but dataset {ds_name!r} "
                           f"gives {w}x{h} ground truth; infer at the checkpoint's size (drop --size, or --size "
                           f"{config.size})")


def infer(translator: Translator, dataset, out_dir: str | Path, image_format: str = "png", *,
          batch_size: int = 4, progress: bool = True, device: str | torch.device | None = None,
          name: str | None = None) -> Path:
    """Translate every sample of ``dataset`` and write the outputs layout; returns the variant folder.

    ``name`` names the variant in the layout (default: ``translator.variant``; an external
    method read with ``outputs`` takes its own name). Compatibility is checked first
    (:func:`check_compatible`). Everything is written into a temp folder beside ``out_dir``
    and moved into place only when complete (:func:`evalkit.layout.install_outputs`): a
    failure or a kill leaves ``out_dir`` as it was, never a partial or a stale variant.
    """
    if image_format not in IMAGE_FORMATS:
        raise EvalkitError(f"unknown image format {image_format!r}; choose one of {sorted(IMAGE_FORMATS)}")
    out_dir = Path(out_dir)
    check_writable(out_dir, directory=True)
    check_compatible(translator, dataset)
    device = resolve_device(device)
    translator = _to_device(translator, device)
    variant = name or translator.variant
    sweep_temp_files(out_dir.parent, recursive=False, target=out_dir.name)  # a killed infer's staging folder
    sweep_temp_files(out_dir, recursive=False)  # and the old variant folder it was removing
    staging = staging_dir(out_dir)
    try:
        _write_outputs(translator, dataset, OutputsLayout(staging), variant, image_format, batch_size, progress)
        return install_outputs(staging, out_dir, variant)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_outputs(translator: Translator, dataset, layout: OutputsLayout, variant: str, image_format: str,
                   batch_size: int, progress: bool) -> None:
    ext = IMAGE_FORMATS[image_format][0]
    rows, n, has_warped = [], len(dataset), False
    names = set()
    for start in range(0, n, batch_size):
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        for s in samples:
            if s.name in names:
                raise EvalkitError(f"dataset yields sample name {s.name!r} twice; names must be unique file stems")
            names.add(s.name)
        out = translator.translate(collate(samples))
        for j, s in enumerate(samples):
            save_png(to_uint8_image(s.image), layout.input_image("real", s.name))
            save_png(to_uint8_image(s.exemplar), layout.input_image("exemplar", s.name))
            save_png(visualise_cond(s.cond), layout.input_image("cond", s.name))
            _save_image(to_uint8_image(out.image[j].clamp(-1, 1)), layout.output_image(variant, s.name, ext), image_format)
            if out.warped is not None:
                has_warped = True
                save_png(to_uint8_image(out.warped[j].clamp(-1, 1)), layout.warped_image(variant, s.name))
            rows.append((s.name, s.query, s.exemplar_name))
        if progress:
            print(f"[{variant}] infer {min(n, start + batch_size)}/{n}", file=sys.stderr, flush=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PAIRS_COLUMNS)
    w.writerows(rows)
    write_atomic(layout.pairs, buf.getvalue())
    # ``image_format`` is the protocol's: the compression the pixels went through. Outputs of an
    # external method that were saved as JPEG stay "jpeg" even when re-written here as PNG.
    meta = {"variant": variant, "image_format": image_format, "written_format": image_format, "extension": ext,
            "jpeg_quality": IMAGE_FORMATS[image_format][1].get("quality"), "n_images": n,
            "warped": has_warped, "dataset": getattr(dataset, "name", type(dataset).__name__),
            "build_args": getattr(translator, "build_args", None)}
    meta.update(getattr(translator, "protocol_meta", {}))
    if image_format == "jpeg":
        meta["image_format"] = "jpeg"
    write_atomic(layout.meta_path(variant), json.dumps(meta, indent=1))
