"""`evalkit weights list | import PATH | verify | fetch`: the pretrained files metrics need."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from evalkit import weights as W
from evalkit.errors import EvalkitError

app = typer.Typer(help="Pretrained weights used by the metrics: list, import, verify, fetch.", no_args_is_help=True)


def _print(rows: list[dict], json_out: bool) -> None:
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weights in {W.weights_dir()}")
    for col in ("key", "file", "present", "verified", "expected_sha256"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r.get(c, "")) for c in ("key", "file", "present", "verified", "expected_sha256")))
    Console().print(table)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """Registered files, where they go, whether present (no hashing)."""
    _print(W.status(), json_out)


@app.command("import")
def import_(path: Path = typer.Argument(..., help="A downloaded weights file (identified by its sha256).")) -> None:
    """Copy a downloaded file into the weights folder under its registered name."""
    dest = W.import_file(path)
    print(f"imported {path} -> {dest}")


@app.command()
def verify(json_out: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """Hash every registered file; exit 2 if any is missing or does not match."""
    rows = W.verify()
    _print(rows, json_out)
    # a file without a direct download (vgg19_conv.pth, --protocol unite2021 only) fails only when present and wrong
    bad = [r["file"] for r in rows if not r["verified"] and (r["present"] or not W.REGISTRY[r["key"]].manual_download)]
    if bad:
        raise EvalkitError(f"missing or mismatched weights in {W.weights_dir()}: {', '.join(bad)}; "
                           f"run `evalkit weights fetch` (connected) or `evalkit weights import PATH`")


@app.command()
def fetch(keys: list[str] = typer.Argument(None, help=f"Which files (default all): {', '.join(W.REGISTRY)}.")) -> None:
    """Download missing files (temp file, sha256 check, rename)."""
    for path in W.fetch(keys or None):
        print(f"ok {path}")
