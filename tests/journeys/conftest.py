"""Fixtures of the journey tests: a researcher's own folders and one small benchmark run.

Every journey drives the CLI as a user would (``typer.testing.CliRunner`` on
``evalkit.cli.app``, or ``python -m evalkit`` where the process boundary matters) on the
real images in ``../shared/data``. The run is made once per session (about a minute on two
cores): shapes at 32 px, one trained variant (one step), an external method given as a
folder of outputs (``name = "outputs"``), and the ground truth as a reference output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from journey_helpers import cli


@pytest.fixture(scope="session")
def ade(shared_data) -> Path:
    """CoCosNet's ADE20K layout: validation/ and training/ with a .jpg image and a .png label per stem."""
    return shared_data / "cocosnet_samples" / "imgs" / "ade20k"


@pytest.fixture(scope="session")
def mine_ade(ade, tmp_path_factory) -> Path:
    """'My outputs' for the six ADE20K validation images: 64x64 PNGs named like the images
    (the real images, bicubic to 64 px, then blurred: a method's imperfect outputs)."""
    out = tmp_path_factory.mktemp("mine_ade")
    for f in sorted((ade / "validation").glob("*.jpg")):
        im = Image.open(f).convert("RGB").resize((64, 64), Image.BICUBIC).filter(ImageFilter.GaussianBlur(1.0))
        im.save(out / f"{f.stem}.png")
    return out


SHAPES = dict(size=32, n_test=6, exemplars_per_query=2)


def shapes_ground_truth() -> dict[str, np.ndarray]:
    """The shapes test samples of the journey run: name → ground truth (uint8 HWC)."""
    from evalkit.data import get_dataset
    from evalkit.images import to_uint8

    ds = get_dataset("shapes", split="test", size=SHAPES["size"], n=SHAPES["n_test"], seed=0,
                     exemplars_per_query=SHAPES["exemplars_per_query"])
    return {s.name: to_uint8(s.image.permute(1, 2, 0).numpy()) for s in (ds[i] for i in range(len(ds)))}


CONFIG = """
name = "journey"
out = "{out}"
seeds = [0]

[[datasets]]
name = "shapes"
size = {size}
n_train = 8
n_test = {n_test}
options = {{ exemplars_per_query = {exemplars_per_query} }}

[[variants]]
name = "spade"
steps = 1
batch_size = 4

[[variants]]
name = "outputs"
folder = "{mine}"
label = "mymethod"

[[variants]]
name = "reference/ground-truth"

[evaluation]
metrics = ["fid", "kid", "lpips", "lpips-diversity", "psnr", "ssim"]
weights = "random"
"""


@pytest.fixture(scope="session")
def journey_run(tmp_path_factory):
    """One `evalkit run`: returns (run folder, its stderr, the config file, my outputs folder)."""
    root = tmp_path_factory.mktemp("journey")
    mine = root / "my_outputs"
    mine.mkdir()
    for name, image in shapes_ground_truth().items():  # my method: the ground truth, blurred
        Image.fromarray(image).filter(ImageFilter.GaussianBlur(0.8)).save(mine / f"{name}.png")
    config = root / "journey.toml"
    config.write_text(CONFIG.format(out=root / "runs", mine=mine, **SHAPES))
    result = cli("run", config, "--no-progress")
    run_dir = root / "runs" / "journey"
    assert (run_dir / "results.csv").is_file() and json.loads((run_dir / "run.json").read_text())["run_id"]
    return run_dir, result.stderr, config, mine


@pytest.fixture
def run_copy(journey_run, tmp_path):
    """A private copy of the run's results.csv and run.json (tests edit it)."""
    run_dir = journey_run[0]
    copy = tmp_path / "run_copy"
    copy.mkdir()
    for name in ("results.csv", "run.json"):
        shutil.copy(run_dir / name, copy / name)
    return copy
