"""`evalkit data list|check|pairs|manipulation`: datasets, their layouts and pair lists."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from evalkit.commands._checks import out_file

app = typer.Typer(help="Datasets: list them, check a layout, build pair lists and manipulation sets.",
                  no_args_is_help=True)
err = Console(stderr=True)

ROOT = typer.Option(None, "--root", help="Dataset root in the official layout (see docs/data.md).")
SPLIT = typer.Option("test", "--split", help="train or test.")
JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


@app.command("list")
def list_(json_out: bool = JSON) -> None:
    """List the registered datasets."""
    from evalkit.data import dataset_spec, list_datasets

    specs = [dataset_spec(n) for n in list_datasets()]
    if json_out:
        print(json.dumps([{"name": s.name, "needs_root": s.needs_root, "cond_kind": s.cond_kind,
                           "description": s.description, "layout": s.layout} for s in specs]))
        return
    table = Table("name", "root", "condition", "description")
    for s in specs:
        table.add_row(s.name, "yes" if s.needs_root else "built-in", s.cond_kind, s.description)
    Console().print(table)


@app.command()
def check(
    name: str = typer.Argument(..., help="Dataset name (evalkit data list)."),
    root: Path = ROOT,
    split: str = SPLIT,
    pairs: Path = typer.Option(None, "--pairs", help="Pair list (default: CoCosNet's data/<name>_ref[_test].txt)."),
    json_out: bool = JSON,
) -> None:
    """Validate a dataset root and pair list; list every problem (exit 2 if any)."""
    from evalkit.data.check import check_dataset
    from evalkit.errors import EvalkitError

    with err.status(f"checking {name} {split}"):
        n, problems = check_dataset(name, root, split, pairs)
    if json_out:
        print(json.dumps({"dataset": name, "split": split, "samples": n, "problems": problems}))
    else:
        for p in problems:
            print(f"problem: {p}")
        print(f"{name} {split}: {n} samples, {len(problems)} problems")
    if problems:
        raise EvalkitError(f"{len(problems)} problems in {name} {split} under {root}; see the list above")


@app.command()
def pairs(
    name: str = typer.Argument(..., help="Dataset name (evalkit data list)."),
    root: Path = ROOT,
    split: str = SPLIT,
    out: Path = typer.Option(..., "--out", help="Pair list to write (query,exemplar1,...)."),
    k: int = typer.Option(5, "--k", min=1, help="Exemplars per query (top-K cosine)."),
    gallery_split: str = typer.Option("train", "--gallery-split", help="Split the exemplars come from."),
    weights: str = typer.Option("pretrained", "--weights", help="pretrained (VGG19 file) or random (seeded, tests)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random-init VGG19."),
    size: int = typer.Option(224, "--size", min=32, help="Images are resized to SIZE x SIZE for VGG19 (>= 32)."),
    json_out: bool = JSON,
) -> None:
    """Build a pair list by VGG19 retrieval (pool5 features, cosine top-K)."""
    from evalkit.data import dataset_spec, get_dataset, list_datasets
    from evalkit.data.retrieval import build_pairs
    from evalkit.errors import EvalkitError

    if not dataset_spec(name).paired:
        paired = [n for n in list_datasets() if dataset_spec(n).paired]
        raise EvalkitError(f"dataset {name!r} draws its own exemplars and takes no pair list; "
                           f"`evalkit data pairs` builds them for {', '.join(paired)}")
    out_file(out)
    queries = get_dataset(name, root=root, split=split, require_pairs=False)
    gallery = queries if gallery_split == split else get_dataset(name, root=root, split=gallery_split,
                                                                  require_pairs=False)
    path = build_pairs(queries, gallery, out, k=k, weights=weights, seed=seed, size=size, progress=not json_out)
    result = {"pairs": str(path), "queries": len(queries.items), "gallery": len(gallery.items), "k": k,
              "weights": weights}
    print(json.dumps(result) if json_out else f"wrote {path}: {len(queries.items)} queries, top-{k} of "
          f"{len(gallery.items)} {gallery_split} images")


@app.command()
def manipulation(
    name: str = typer.Argument(..., help="Label-map dataset (ade20k, cocostuff, celebahq) or shapes."),
    out: Path = typer.Option(..., "--out", help="New folder for the manipulation set."),
    root: Path = ROOT,
    split: str = SPLIT,
    size: int = typer.Option(256, "--size", help="Resolution of the written set."),
    n: int = typer.Option(None, "--n", help="Number of edited samples (default: all; shapes: 64)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the region and edit choice."),
    max_shift: float = typer.Option(0.2, "--max-shift", help="Largest move, as a fraction of the size."),
    scale_min: float = typer.Option(0.8, "--scale-min"),
    scale_max: float = typer.Option(1.25, "--scale-max"),
    json_out: bool = JSON,
) -> None:
    """Write an image-manipulation test set: exemplar = original, condition = edited label map."""
    from evalkit.data.manipulation import write_manipulation_set

    meta = write_manipulation_set(name, root, out, split=split, size=size, n=n, seed=seed, max_shift=max_shift,
                                  scale_range=(scale_min, scale_max), progress=not json_out)
    print(json.dumps({"out": str(out), **meta}) if json_out else
          f"wrote {meta['n']} manipulation samples of {name} to {out} (read with --dataset manipulation --root {out})")
