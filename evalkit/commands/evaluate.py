"""`evalkit evaluate`: every metric on a folder of generated images vs real ones.

Inputs are folders, quoted glob patterns or registered dataset layouts
(``DATASET:ROOT[:SPLIT]``), see :func:`evalkit.images.resolve_images`. ``--out`` writes the
long results table (``reports/results.py``), which ``report leaderboard|compare|paper-tables``
read as they read a run's ``results.csv``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from evalkit.errors import EvalkitError
from evalkit.files import write_atomic


def rows_json(df) -> str:
    """Rows as a JSON list, floats at full precision (repr); non-finite values (PSNR of
    identical images) become ``null``, as JSON has no infinity."""
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    return json.dumps([{k: clean(v) for k, v in r.items()} for r in df.to_dict("records")], indent=1, allow_nan=False)


def print_table(df, *, na: set[int] = frozenset()) -> None:
    """The rows as a terminal table; rows whose index is in ``na`` print ``n/a`` (KID-std of
    a single subset)."""
    from rich.console import Console
    from rich.table import Table

    from evalkit.protocol import NOT_COMPARABLE_NOTE

    caption = None if df["comparable"].all() else f"comparable = no: {NOT_COMPARABLE_NOTE}"
    presets = sorted(set(df["protocol"])) if "protocol" in df.columns else []
    title = "evalkit evaluate" + (f" (protocol {', '.join(presets)})" if presets and presets != ["clean"] else "")
    table = Table(title=title, caption=caption)
    # Each number stays identifiable on a narrow terminal: metric, value, n and comparable
    # never wrap; variant and weights may (the backbone name is in --json / --out).
    variant = "metric_variant" if "metric_variant" in df.columns else "variant"
    for col in ("metric", "variant", "value", "n", "comparable", "weights"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left",
                         no_wrap=col not in ("variant", "weights"), overflow="fold")
    for i, r in zip(df.index, df.to_dict("records")):
        weights = r["weights_sha256"]
        value = "n/a" if i in na else f"{r['value']:.6g}"
        table.add_row(r["metric"], r[variant], value, str(r["n"]), "yes" if r["comparable"] else "no",
                      weights[:12] + "..." if len(weights) == 64 else weights)
    Console().print(table)


SMALL_N = 2048  # Inception's feature size: below it FID's covariance is rank-deficient and FID/KID biased


def notes(df, options) -> tuple[list[str], set[int]]:
    """What a reader must know about these rows (stderr ``note:`` lines) and the rows that
    print ``n/a``: FID/KID from fewer than 2048 images (biased: compare only at equal n);
    KID-std from a single subset (every subset holds every image: no spread)."""
    out, na = [], set()
    fid = df[df["metric"].isin(["FID", "KID"])]
    if len(fid):
        n = int(fid["n_images"].min())
        if n < SMALL_N:
            out.append(f"FID/KID from {n} generated images (< {SMALL_N}): biased upwards at small n; compare "
                       f"only numbers computed at the same n")
    kid = df[df["metric"] == "KID-std"]
    if len(kid):
        n = int(kid["n_images"].iloc[0])
        n_real = int(df.attrs.get("n_real", n))
        size = min(n, n_real, options.kid_subset_size)
        if options.kid_subsets < 2 or size >= max(n, n_real):
            na.update(kid.index)
            out.append(f"KID-std n/a: one subset of {size} images (every subset holds every image); "
                       "pass --kid-subset-size below the set sizes to measure a spread")
    return out, na


def default_method(generated: str | Path) -> str:
    """Method name for the rows: the outputs layout's ``<variant_dir>/meta.json`` variant when
    ``generated`` is its ``images`` folder, else the folder's own name (a glob's folder, a
    dataset layout's name)."""
    generated = Path(generated)
    if not generated.is_dir():
        text = str(generated)
        if any(c in text for c in "*?["):
            parent = Path(text.split("*")[0].split("?")[0].split("[")[0] or ".")
            return (parent if str(parent).endswith("/") or parent.is_dir() else parent.parent).resolve().name
        return text.split(":", 1)[0]
    meta = generated.parent / "meta.json"
    if generated.name == "images" and meta.is_file():
        try:
            variant = json.loads(meta.read_text(encoding="utf-8")).get("variant")
        except (OSError, ValueError, AttributeError) as err:
            raise EvalkitError(f"{meta}: unreadable meta.json ({err}); fix it or pass --method") from err
        if isinstance(variant, str) and variant:
            return variant
    return generated.resolve().name


INPUTS = "a folder, a quoted glob (\"DIR/*.jpg\") or DATASET:ROOT[:SPLIT]"


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        generated: str = typer.Option(..., "--generated", help=f"Generated images: {INPUTS}."),
        real: str = typer.Option(None, "--real", help=f"Real images: {INPUTS} (paired with generated by name)."),
        real_stats: Path = typer.Option(None, "--real-stats", help="Instead of --real: a .npz of `evalkit stats "
                                                                   "build` (FID, KID, prdc only; refused when built "
                                                                   "under another protocol)."),
        exemplars: str = typer.Option(None, "--exemplars", help="Each sample's exemplar (style consistency): "
                                                                f"{INPUTS}."),
        pairs: Path = typer.Option(None, "--pairs", help="pairs.csv (name,query,exemplar_name): groups for LPIPS diversity."),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Also search sub-folders (names: "
                                                                       "relative path joined with __)."),
        real_size: int = typer.Option(None, "--real-size", help="Resize real images and exemplars to N x N first "
                                                                "(the papers' protocol at the generated size; "
                                                                "recorded as real_resize)."),
        real_filter: str = typer.Option("bicubic", "--real-filter", help="Filter of --real-size: bicubic (the "
                                                                          "papers'), bilinear, lanczos, box, nearest."),
        metrics: list[str] = typer.Option(None, "--metrics", help="Metrics (repeat or comma-separate): fid,kid,prdc,swd,lpips,lpips-diversity,vgg,psnr,ssim. Default: all that apply."),
        weights: str = typer.Option("pretrained", "--weights", help="pretrained | random (random: not comparable with published numbers)."),
        fid_mode: str = typer.Option("clean", "--fid-mode", help="clean (clean-fid) | legacy (pytorch-fid port)."),
        protocol: str = typer.Option("clean", "--protocol", help="Evaluation preset: clean (evalkit's own) | "
                                                                 "cocosnet2020 | unite2021 | rabit2022 (as published; "
                                                                 "`evalkit protocols` lists what each pins)."),
        weights_file: list[str] = typer.Option(None, "--weights-file", help="KEY=PATH (repeatable): a weights file "
                                                                           "the registry does not know, loaded "
                                                                           "strictly for backbone KEY (`evalkit "
                                                                           "weights list`); recorded as "
                                                                           "unregistered:<sha256>."),
        labels: str = typer.Option(None, "--labels", help="Label maps of the generated images, by name (a folder "
                                                          "or a quoted glob such as \"DIR/*.png\"): --protocol "
                                                          "unite2021's semantic consistency."),
        seed: int = typer.Option(0, "--seed", help="Seed of KID subsets, SWD patches/directions and random backbones."),
        swd_shared_patches: bool = typer.Option(False, "--swd-shared-patches", help="SWD with one draw of patch centres for both sets (identical sets -> 0; variant pggan-shared-patches) instead of PGGAN's independent draws."),
        cache_dir: Path = typer.Option(None, "--cache-dir", help="Feature cache (default $EVALKIT_CACHE or ~/.cache/evalkit/features)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
        kid_subsets: int = typer.Option(100, "--kid-subsets", help="KID: number of random subsets."),
        kid_subset_size: int = typer.Option(1000, "--kid-subset-size", help="KID: images per subset (at most the set sizes)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA when available) | cpu | cuda[:N] for the backbones."),
        json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON on stdout (nothing else on stdout)."),
        out: Path = typer.Option(None, "--out", help="Write the rows to this CSV file: the long results table that "
                                                     "`evalkit report` reads."),
        method: str = typer.Option(None, "--method", help="Method (variant) of the rows (default: the variant in OUT/<variant_dir>/meta.json for OUT/<variant_dir>/images, else the generated folder's name)."),
        dataset: str = typer.Option("", "--dataset", help="Dataset column of the rows."),
        run_id: str = typer.Option(None, "--run-id", help="Run id of the rows (default: the --out file's stem, "
                                                          "else 'evaluate')."),
    ) -> None:
        """Evaluate generated images: FID, KID, SWD, LPIPS, VGG consistency, PSNR, SSIM, in one pass."""
        from evalkit.commands._checks import out_file
        from evalkit.devices import resolve_device, return_freed_memory
        from evalkit.metrics import evaluate_folders
        from evalkit.metrics.options import EvaluationOptions
        from evalkit.protocol import NOT_COMPARABLE_NOTE
        from evalkit.reports import results as R
        from evalkit.weights import parse_weights_files

        resolve_device(device)  # a device this machine lacks is one line, before any work
        return_freed_memory()  # streamed sets: peak memory flat in N
        chosen = [m.strip().lower() for item in metrics or [] for m in item.split(",") if m.strip()] or None
        options = EvaluationOptions(metrics=None if chosen is None else tuple(chosen), weights=weights,
                                    fid_mode=fid_mode, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                                    swd_shared_patches=swd_shared_patches, seed=seed, device=device,
                                    cache_dir=cache_dir, cache=not no_cache, protocol=protocol,
                                    weights_files=parse_weights_files(weights_file)).check()
        if out is not None:
            if out.suffix.lower() != ".csv":
                raise EvalkitError(f"--out {out}: expected a .csv file name")
            if not out.parent.is_dir():
                raise EvalkitError(f"--out {out}: folder {out.parent} does not exist; create it first")
            out_file(out)
        variant = method if method is not None else default_method(generated)
        df = evaluate_folders(generated, real, exemplars=exemplars, pairs=pairs, options=options, progress=True,
                              recursive=recursive, real_size=real_size, real_filter=real_filter, real_stats=real_stats,
                              labels=labels)
        for note in df.attrs.get("notes", []):
            print(f"note: {note}", file=sys.stderr)
        for metric, why in df.attrs.get("skipped", {}).items():
            print(f"note: skipped {metric}: {why}", file=sys.stderr)
        small, na = notes(df, options)
        for note in small:
            print(f"note: {note}", file=sys.stderr)
        rows = R.make_rows(df, run_id=run_id or (out.stem if out is not None else "evaluate"),
                           method=variant.split("/")[0], dataset=dataset, split="test", seed=0, variant=variant)
        if out is not None:
            R.write(rows, out)  # full precision, as --json
        if not rows["comparable"].all():  # only where a random backbone was used
            print(f"warning: {NOT_COMPARABLE_NOTE}", file=sys.stderr)
        if json_out:
            print(rows_json(rows))
        else:
            print_table(rows, na=na)
