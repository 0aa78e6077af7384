"""`evalkit official list | check`: the baselines' released checkpoints, run by their own code
(:mod:`evalkit.baselines.official`); `evalkit infer --official CODE --release NAME` writes their outputs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from evalkit.commands.train import DEVICE

app = typer.Typer(help="Released checkpoints of SPADE, CoCosNet, CoCosNet-v2 and UNITE, run by their own code.",
                  no_args_is_help=True)


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """Every released code and checkpoint: the files it needs, its test flags, its notes."""
    from evalkit.baselines.official import listing

    rows = listing()
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        print(f"{r['code']} {r['release']} ({r['repo']}, dataset {r['dataset']}{', CUDA only' if r['cuda_only'] else ''})")
        print(f"    files: {', '.join(r['files'])}")
        print(f"    flags: {' '.join(r['flags'])}")
        if r["notes"]:
            print(f"    note: {r['notes']}")


@app.command("check")
def check(
    code: str = typer.Option(..., "--code", help="spade, cocosnet, cocosnet-v2 or unite."),
    release: str = typer.Option(..., "--release", help="The released checkpoint (`evalkit official list`)."),
    checkout: Path = typer.Option(..., "--checkout", help="Your clone of the code's repository."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Folder holding the checkpoint's *_net_*.pth files."),
    device: str = DEVICE,
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Build the released model from the checkout and load the checkpoint strictly; print its sha256 manifest."""
    from evalkit.baselines.official import official

    t = official(code, release, checkout, checkpoint, device=device)
    meta = t.protocol_meta
    if json_out:
        print(json.dumps(meta, indent=1))
        return
    print(f"{meta['source']}: built with {' '.join(meta['flags'])}, every network loaded strictly")
    for name, digest in meta["checkpoint_sha256"].items():
        print(f"    {name}  sha256 {digest}")
    for line in meta["patched"] or ():
        print(f"    patched: {line}")
