"""`evalkit protocols [NAME] [--json]`: the evaluation presets, each field with its citations."""

from __future__ import annotations

import json

import typer


def card(name: str) -> str:
    """The protocol card of preset ``name``: what it reproduces, every pinned field with its
    sources, its known defects and what could not be pinned (plain text)."""
    from evalkit import protocols

    p = protocols.get(name)
    lines = [f"{p.name}: {p.title}", f"  reproduces: {p.reproduces}",
             f"  metric families: {', '.join(p.families) if p.families is not None else 'all'}"]
    for pin in p.pins:
        lines.append(f"  {pin.name}{' (inferred)' if pin.inferred else ''}: {pin.value}")
        lines += [f"      source: {s}" for s in pin.sources]
    if p.defects:
        lines.append("  known defects (reproduced under this preset, or named where evalkit cannot):")
        lines += [f"    - {d}" for d in p.defects]
    if p.unpinned:
        lines.append("  not pinned:")
        lines += [f"    - {u}" for u in p.unpinned]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("protocols")
    def protocols_(
        name: str = typer.Argument(None, help="One preset (default: all): clean, cocosnet2020, unite2021, rabit2022."),
        json_out: bool = typer.Option(False, "--json", help="The presets as JSON on stdout."),
    ) -> None:
        """List the evaluation presets of `evaluate --protocol`: each one's fields and citations."""
        from evalkit import protocols

        chosen = [protocols.get(name)] if name else list(protocols.PRESETS.values())
        if json_out:
            print(json.dumps([p.as_dict() for p in chosen], indent=1))
            return
        print("\n\n".join(card(p.name) for p in chosen))
