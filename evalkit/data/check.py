"""``evalkit data check``: every problem of a dataset root + pair list, all at once."""

from __future__ import annotations

from pathlib import Path

from evalkit.data.registry import dataset_spec, get_dataset
from evalkit.errors import EvalkitError

__all__ = ["check_dataset"]


def check_dataset(name: str, root: str | Path | None, split: str = "test", pairs: str | Path | None = None,
                  size: int = 64) -> tuple[int, list[str]]:
    """``(number of samples checked, problems)``.

    Official layouts: missing images/annotations/exemplars, labels without images,
    queries without a pair-list line, corrupt files, label ids out of range and
    image/label size mismatches. Other datasets: every sample is loaded once and each
    failure reported. Without a usable pair list the images and annotations of the split
    are still checked (the pair-list problem comes first); problems that prevent reading
    the split at all (no root, empty split) come back as the only problem.
    """
    spec = dataset_spec(name)
    if pairs is not None and not spec.paired:
        raise EvalkitError(f"dataset {name!r} takes no pair list; drop --pairs")
    kw = {"pairs": pairs, "collect_problems": True} if spec.paired else {}
    try:
        ds = get_dataset(name, root=root, split=split, size=size, **kw)
    except EvalkitError as err:
        if not spec.paired:
            return 0, [str(err)]
        try:  # no usable pair list: still check every image and annotation of the split
            ds = get_dataset(name, root=root, split=split, size=size, require_pairs=False, collect_problems=True)
        except EvalkitError:
            return 0, [str(err)]
        return len(ds.items), [str(err), *ds.validate()]
    if spec.paired:
        return len(ds.items), ds.validate()
    problems = []
    for i in range(len(ds)):
        try:
            ds[i]
        except EvalkitError as err:
            problems.append(str(err))
    return len(ds), problems
