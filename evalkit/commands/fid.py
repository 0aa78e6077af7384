"""`evalkit fid GEN REAL`: FID between two image sets, as short as ``python -m pytorch_fid``.

The same evaluation as ``evalkit evaluate --metrics fid`` (clean-fid's protocol by
default, Heusel et al. 2017 Eq. 6 in float64): folders, quoted globs or
``DATASET:ROOT[:SPLIT]``; mixed sizes are fine (each image goes through the 299 px
resize); prints ``FID: <value>`` on stdout, notes on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("fid")
    def fid(
        generated: str = typer.Argument(..., help="Generated images: a folder, a quoted glob or DATASET:ROOT[:SPLIT]."),
        real: str = typer.Argument(..., help="Real images: a folder, a quoted glob or DATASET:ROOT[:SPLIT]."),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Also search sub-folders."),
        real_size: int = typer.Option(None, "--real-size", help="Resize real images to N x N first (bicubic)."),
        weights: str = typer.Option("pretrained", "--weights", help="pretrained | random (not comparable)."),
        fid_mode: str = typer.Option("clean", "--fid-mode", help="clean (clean-fid) | legacy (pytorch-fid port)."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA when available) | cpu | cuda[:N]."),
        cache_dir: Path = typer.Option(None, "--cache-dir", help="Feature cache (default $EVALKIT_CACHE)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
        json_out: bool = typer.Option(False, "--json", help="Print the FID row as JSON on stdout."),
    ) -> None:
        """FID between GENERATED and REAL (clean-fid protocol); prints `FID: <value>`."""
        from evalkit.commands.evaluate import notes, rows_json
        from evalkit.devices import resolve_device, return_freed_memory
        from evalkit.metrics import evaluate_folders
        from evalkit.metrics.options import EvaluationOptions
        from evalkit.protocol import NOT_COMPARABLE_NOTE

        resolve_device(device)
        return_freed_memory()  # streamed sets: peak memory flat in N
        options = EvaluationOptions(metrics=("fid",), weights=weights, fid_mode=fid_mode, device=device,
                                    cache_dir=cache_dir, cache=not no_cache).check()
        df = evaluate_folders(generated, real, options=options, progress=True, recursive=recursive,
                              real_size=real_size)
        for note in [*df.attrs.get("notes", []), *notes(df, options)[0]]:
            print(f"note: {note}", file=sys.stderr)
        row = df.iloc[0]
        if not bool(row["comparable"]):
            print(f"warning: {NOT_COMPARABLE_NOTE}", file=sys.stderr)
        if json_out:
            print(json.dumps(json.loads(rows_json(df))[0]))
        else:
            print(f"FID: {row['value']:.6g}")
