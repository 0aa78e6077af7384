"""`evalkit stats build`: a real set's reference statistics, for `evaluate --real-stats`.

One ``.npz`` (:mod:`evalkit.metrics.stats`): the Inception mean / covariance, the raw
features KID and precision/recall/density/coverage need, a sha256 manifest of the image
files and the protocol they were embedded under. The real images are read exactly as
``evaluate --real`` reads them (folder, quoted glob, ``DATASET:ROOT[:SPLIT]``,
``--recursive``, ``--real-size``/``--real-filter``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from evalkit.errors import EvalkitError

app = typer.Typer(help="Reference statistics of a real image set (evaluate --real-stats).", no_args_is_help=True)

INPUTS = "a folder, a quoted glob (\"DIR/*.jpg\") or DATASET:ROOT[:SPLIT]"


@app.command("build")
def build(
    real: str = typer.Option(..., "--real", help=f"Real images: {INPUTS}."),
    out: Path = typer.Option(..., "--out", help="The .npz to write (atomically)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also search sub-folders (as evaluate)."),
    real_size: int = typer.Option(None, "--real-size", help="Resize real images to N x N first (recorded as "
                                                            "real_resize; evaluate must ask the same)."),
    real_filter: str = typer.Option("bicubic", "--real-filter", help="Filter of --real-size: bicubic, bilinear, "
                                                                      "lanczos, box, nearest."),
    weights: str = typer.Option("pretrained", "--weights", help="pretrained | random (random: not comparable "
                                                                "with published numbers)."),
    fid_mode: str = typer.Option("clean", "--fid-mode", help="clean (clean-fid) | legacy (pytorch-fid port)."),
    seed: int = typer.Option(0, "--seed", help="Seed of a random backbone (as evaluate's --seed)."),
    protocol: str = typer.Option("clean", "--protocol", help="Evaluation preset: clean | cocosnet2020 | unite2021 | "
                                                              "rabit2022 (a paper preset needs --real-size: the "
                                                              "outputs' side); evaluate --real-stats must ask the "
                                                              "same."),
    weights_file: list[str] = typer.Option(None, "--weights-file", help="KEY=PATH (repeatable): a weights file the "
                                                                        "registry does not know, loaded strictly "
                                                                        "(as evaluate); recorded as unregistered."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Feature cache (default $EVALKIT_CACHE or "
                                                            "~/.cache/evalkit/features)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available) | cpu | cuda[:N] for the "
                                                        "backbone."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout."),
) -> None:
    """Embed the real images once; `evalkit evaluate --real-stats FILE` then gives the same FID/KID/prdc."""
    from evalkit.commands._checks import out_file
    from evalkit.devices import resolve_device, return_freed_memory
    from evalkit.metrics import stats
    from evalkit.metrics.options import EvaluationOptions
    from evalkit.protocol import NOT_COMPARABLE_NOTE
    from evalkit.weights import parse_weights_files

    resolve_device(device)
    return_freed_memory()  # streamed sets: peak memory flat in N
    if out.suffix.lower() != ".npz":
        raise EvalkitError(f"--out {out}: expected a .npz file name")
    out_file(out)
    options = EvaluationOptions(metrics=("fid",), weights=weights, fid_mode=fid_mode, seed=seed, device=device,
                                cache_dir=cache_dir, cache=not no_cache, protocol=protocol,
                                weights_files=parse_weights_files(weights_file)).check()
    ref = stats.build(real, options, recursive=recursive, real_size=real_size, real_filter=real_filter,
                      progress=True)
    stats.save(ref, out)
    p = ref.protocol
    summary = {"out": str(out), "sha256": stats.file_sha256(out), "n_images": ref.n,
               "features": int(ref.features.shape[1]), "protocol": p}
    if not p["comparable"]:
        print(f"warning: {NOT_COMPARABLE_NOTE}", file=sys.stderr)
    if json_out:
        print(json.dumps(summary, indent=1))
    else:
        w = p["weights_sha256"]
        w = w[:12] + "..." if len(w) == 64 else w
        print(f"wrote {out}: {ref.n} images, {summary['features']}-d {p['backbone']} features (fid mode "
              f"{p['metric_variant']}, weights {w}, real_resize {p['real_resize']}, protocol {p['protocol']}); "
              f"sha256 {summary['sha256']}")
