"""`evalkit train` and `evalkit infer`: train a translator variant, write its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from evalkit.commands._checks import out_folder
from evalkit.config import SEED_MAX

JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else on stdout).")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when available) | cpu | cuda[:N] | mps.")


def register(app: typer.Typer) -> None:
    """Attach the top-level ``train`` and ``infer`` commands."""

    @app.command()
    def train(
        variant: str = typer.Option(..., "--variant", help="Translator variant (rabit, unite, cocosnet, spade, ...; docs/methods.md lists them)."),
        dataset: str = typer.Option("shapes", "--dataset", help="Dataset name (evalkit data list)."),
        root: Path = typer.Option(None, "--root", help="Dataset root in the official layout."),
        pairs: Path = typer.Option(None, "--pairs", help="Pair list of a real dataset (default: CoCosNet's "
                                                         "data/<name>_ref[_test].txt)."),
        preset: str = typer.Option("tiny", "--preset", help="Size preset: tiny (64px, CPU) or paper (256px)."),
        steps: int = typer.Option(None, "--steps", min=1, help="Total optimisation steps."),
        epochs: int = typer.Option(None, "--epochs", min=1, help="Total epochs (instead of --steps)."),
        out: Path = typer.Option(Path("runs/train"), "--out", help="Run folder (checkpoint OUT/last.pt)."),
        resume: bool = typer.Option(False, "--resume", help="Continue OUT/last.pt up to the total steps."),
        batch_size: int = typer.Option(4, "--batch-size", min=1),
        n: int = typer.Option(None, "--n", min=1, help="Use only the first N training samples."),
        seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of initialisation, data order and sampling."),
        size: int = typer.Option(None, "--size", help="Override the preset's output size."),
        device: str = DEVICE,
        checkpoint_every: int = typer.Option(100, "--checkpoint-every", min=1),
        json_out: bool = JSON,
    ) -> None:
        """Train VARIANT on DATASET; checkpoints atomically to OUT/last.pt."""
        from evalkit.data import get_dataset
        from evalkit.devices import resolve_device
        from evalkit.errors import EvalkitError
        from evalkit.methods.registry import build_translator, variant_spec
        from evalkit.methods.training import train as run_train

        from evalkit.files import sweep_temp_files

        dev = resolve_device(device)
        out_folder(out)
        if (steps is None) == (epochs is None):
            raise EvalkitError("give exactly one of --steps N or --epochs N")
        if not variant_spec(variant).trainable:
            raise EvalkitError(f"variant {variant!r} is not trainable (it reads saved outputs); use `evalkit infer`")
        overrides = {} if size is None else {"size": size}
        data_kw = {} if pairs is None else {"pairs": pairs}
        probe = get_dataset(dataset, root=root, split="train", size=8 if size is None else size, n=1, seed=seed,
                            **data_kw)
        translator = build_translator(variant, cond_channels=probe.cond_channels, preset=preset, seed=seed, **overrides)
        ds = get_dataset(dataset, root=root, split="train", size=translator.config.size, n=n, seed=seed, **data_kw)
        total = steps if steps is not None else epochs * max(1, len(ds) // batch_size)
        sweep_temp_files(out, recursive=False)  # checkpoint temp files of a killed run (never resumed from)
        ckpt = run_train(translator, ds, steps=total, out_dir=out, resume=resume, batch_size=batch_size, seed=seed,
                         progress=True, checkpoint_every=checkpoint_every, device=dev)
        history = json.loads((out / "losses.json").read_text()) if (out / "losses.json").is_file() else []
        result = {"variant": variant, "dataset": dataset, "preset": preset, "steps": total,
                  "checkpoint": str(ckpt), "last_losses": history[-1] if history else None}
        print(json.dumps(result) if json_out else f"trained {variant} for {total} steps: {ckpt}")

    @app.command()
    def infer(
        checkpoint: Path = typer.Option(None, "--checkpoint", help="OUT/last.pt of `evalkit train` (or its folder); "
                                        "with --official, the released checkpoint's folder."),
        variant: str = typer.Option(None, "--variant", help="Only for untrained variants: outputs."),
        folder: Path = typer.Option(None, "--folder", help="outputs: folder of saved output images."),
        official_code: str = typer.Option(None, "--official", help="A released checkpoint run by its own code: "
                                          "spade, cocosnet, cocosnet-v2 or unite (with --release, --checkout and "
                                          "--checkpoint DIR; `evalkit official list`)."),
        release: str = typer.Option(None, "--release", help="--official: the released checkpoint (e.g. ade20k)."),
        checkout: Path = typer.Option(None, "--checkout", help="--official: your clone of the code's repository."),
        name: str = typer.Option(None, "--name", help="Name of the method in the outputs layout and results "
                                                      "(default: the variant; e.g. --variant outputs --name mymethod)."),
        dataset: str = typer.Option("shapes", "--dataset"),
        root: Path = typer.Option(None, "--root"),
        pairs: Path = typer.Option(None, "--pairs", help="Pair list of a real dataset (default: CoCosNet's "
                                                         "data/<name>_ref[_test].txt)."),
        exemplars_per_query: int = typer.Option(1, "--exemplars-per-query", min=1,
                                                help="Outputs per query, one per exemplar: the first K of each "
                                                     "pair-list line (LPIPS diversity; shapes draws K styles)."),
        split: str = typer.Option("test", "--split"),
        n: int = typer.Option(None, "--n", min=1, help="Only the first N samples."),
        size: int = typer.Option(None, "--size", help="Image size (default: the checkpoint's)."),
        seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the dataset's sampling."),
        out: Path = typer.Option(Path("runs/outputs"), "--out", help="Outputs folder (layout in docs/methods.md)."),
        image_format: str = typer.Option("png", "--format", help="png (default) or jpeg (quality 95)."),
        batch_size: int = typer.Option(4, "--batch-size", min=1),
        device: str = DEVICE,
        json_out: bool = JSON,
    ) -> None:
        """Translate a dataset split with a trained checkpoint (or saved outputs) into the outputs layout."""
        from evalkit.data import get_dataset
        from evalkit.devices import resolve_device
        from evalkit.errors import EvalkitError
        from evalkit.methods.registry import build_translator
        from evalkit.methods.training import IMAGE_FORMATS, infer as run_infer, load_checkpoint

        dev = resolve_device(device)
        out_folder(out)
        data_kw = {"exemplars_per_query": exemplars_per_query} if exemplars_per_query > 1 else {}
        if pairs is not None:
            data_kw["pairs"] = pairs
        if image_format not in IMAGE_FORMATS:
            raise EvalkitError(f"--format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
        if official_code is not None:
            from evalkit.baselines.official import official

            if variant is not None or folder is not None:
                raise EvalkitError("--official runs a released checkpoint; it takes no --variant or --folder")
            missing = [f for f, v in (("--release", release), ("--checkout", checkout), ("--checkpoint", checkpoint))
                       if v is None]
            if missing:
                raise EvalkitError(f"--official {official_code} needs {', '.join(missing)} (`evalkit official list`)")
            if size is None:
                raise EvalkitError("--official needs --size (the resolution the released model translates at)")
            translator = official(official_code, release, checkout, checkpoint, device=dev,
                                  variant=f"official/{official_code}")
            img_size = size
        elif (checkpoint is None) == (variant is None):
            raise EvalkitError("give exactly one of --checkpoint PATH, --variant outputs --folder DIR or "
                               "--official CODE --release NAME --checkout DIR --checkpoint DIR")
        elif checkpoint is not None:
            translator = load_checkpoint(checkpoint, dev)
            img_size = translator.config.size if size is None else size
        else:
            if folder is None:
                raise EvalkitError(f"--variant {variant} needs --folder DIR of saved outputs")
            if size is None:
                raise EvalkitError("--variant outputs needs --size (the resolution of the saved outputs)")
            probe = get_dataset(dataset, root=root, split=split, size=size, n=1, seed=seed, **data_kw)
            translator = build_translator(variant, cond_channels=probe.cond_channels, folder=folder)
            img_size = size
        ds = get_dataset(dataset, root=root, split=split, size=img_size, n=n, seed=seed, **data_kw)
        if name is not None:
            from evalkit.config import check_method_name

            check_method_name(name, "--name")
        vdir = run_infer(translator, ds, out, image_format, batch_size=batch_size, device=dev, name=name)
        label = name or translator.variant
        result = {"variant": label, "outputs": str(vdir), "n_images": len(ds), "image_format": image_format}
        print(json.dumps(result) if json_out else f"wrote {len(ds)} outputs of {label} to {vdir}")
