"""`evalkit profile memory`: real peak memory and time of the alignment modules."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Memory/time profiles of the alignment modules (cosine, RAS, UOT).",
                  no_args_is_help=True)
err = Console(stderr=True)


def _ints(text: str, what: str) -> tuple[int, ...]:
    from evalkit.errors import EvalkitError

    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise EvalkitError(f"--{what} must be comma-separated integers, got {text!r}") from None


@app.command()
def memory(
    modules: str = typer.Option("cosine,ras,uot,uot-streaming", "--modules",
                                help="Comma-separated: cosine, ras, uot, uot-streaming."),
    sizes: str = typer.Option("32,64,128,256", "--sizes",
                              help="Correspondence grid sides (L = size x size)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available) | cpu | cuda[:N]."),
    backward: bool = typer.Option(False, "--backward", help="Profile forward + backward."),
    channels: int = typer.Option(64, "--channels", help="Feature channels C."),
    iters: int = typer.Option(10, "--iters", help="Sinkhorn iterations for uot/uot-streaming."),
    memory_limit_gb: float = typer.Option(None, "--memory-limit-gb",
                                          help="Per-case memory cap on CPU (default 50% of available)."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds allowed per case."),
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON on stdout."),
    plot: Path = typer.Option(None, "--out", "--plot", help="Write a log-log plot of memory vs L (.png)."),
) -> None:
    """Measure peak memory and time per module and size, one fresh subprocess per case
    (a progress line per case on stderr)."""
    from evalkit.profile.memory import (ProfileConfig, check_plot_path, plot_profile,
                                        profile_memory, rows_as_dicts, validate)

    config = ProfileConfig(
        modules=tuple(m.strip() for m in modules.split(",") if m.strip()),
        sizes=_ints(sizes, "sizes"), device=device, backward=backward, channels=channels,
        iters=iters, timeout=timeout,
        memory_limit=None if memory_limit_gb is None else int(memory_limit_gb * 2**30))
    validate(config)
    if plot is not None:
        check_plot_path(plot)  # fail before hours of profiling, not after
    rows = profile_memory(config, progress=True)
    if plot is not None:
        plot_profile(rows, plot)
        err.print(f"plot written to {plot}")
    if json_out:
        print(json.dumps(rows_as_dicts(rows)))
        return
    table = Table("module", "size", "L", "status", "peak MiB", "theory MiB", "seconds", "exponent")
    for r in rows:
        table.add_row(r.module, str(r.size), str(r.L), r.status,
                      "-" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f}",
                      f"{r.theory_bytes / 2**20:.1f}",
                      "-" if r.seconds is None else f"{r.seconds:.3f}",
                      "-" if r.fit_exponent is None else f"{r.fit_exponent:.2f}")
    Console().print(table)
    err.print(f"memory: {rows[0].method if rows else ''}; device {rows[0].device if rows else device}")
