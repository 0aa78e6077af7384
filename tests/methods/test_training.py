"""Training loop: data order, atomic checkpoints, exact resume, outputs layout, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from evalkit.cli import app
from evalkit.data import get_dataset
from evalkit.errors import EvalkitError
from evalkit.methods.registry import build_translator
from evalkit.methods.training import batch_indices, infer, load_checkpoint, train
from translator_testing import micro


def test_batch_indices_are_seeded_epoch_permutations():
    first_epoch = sorted(i for s in range(5) for i in batch_indices(10, 2, seed=3, step=s))
    assert first_epoch == list(range(10))
    assert batch_indices(10, 2, 3, 7) == batch_indices(10, 2, 3, 7)
    assert [batch_indices(10, 2, 3, s) for s in range(5)] != [batch_indices(10, 2, 3, s) for s in range(5, 10)]
    with pytest.raises(EvalkitError, match="fewer than batch size"):
        batch_indices(1, 2, 0, 0)


@pytest.mark.parametrize("variant", ["rabit/manipulation", "spade-vae", "unite"])
def test_resume_gives_the_same_next_loss(variant, train_set, tmp_path):
    """Kill after k=2 steps, resume: the loss at step 3 (and 4) equals the uninterrupted run's."""
    full = build_translator(variant, cond_channels=train_set.cond_channels, seed=5, **micro(variant))
    train(full, train_set, steps=4, out_dir=tmp_path / "full", batch_size=2, seed=5, progress=False)
    part = build_translator(variant, cond_channels=train_set.cond_channels, seed=5, **micro(variant))
    train(part, train_set, steps=2, out_dir=tmp_path / "part", batch_size=2, seed=5, progress=False)
    torch.manual_seed(12345)  # a fresh process would not share the first run's RNG state
    fresh = build_translator(variant, cond_channels=train_set.cond_channels, seed=99, **micro(variant))
    train(fresh, train_set, steps=4, out_dir=tmp_path / "part", resume=True, batch_size=2, seed=5, progress=False)
    a = json.loads((tmp_path / "full" / "losses.json").read_text())
    b = json.loads((tmp_path / "part" / "losses.json").read_text())
    assert [h["step"] for h in b] == [1, 2, 3, 4]
    for k in (2, 3):
        assert a[k] == b[k], (k, a[k], b[k])


def test_checkpoint_is_atomic_and_loads_strictly(train_set, tmp_path):
    t = build_translator("cocosnet", cond_channels=train_set.cond_channels, **micro("cocosnet"))
    ckpt = train(t, train_set, steps=2, out_dir=tmp_path, batch_size=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "losses.json"]  # no temp files left
    payload = torch.load(ckpt, weights_only=False)
    assert payload["step"] == 2 and set(payload["optimizers"]) == {"G", "D"} and "torch" in payload["rng"]
    loaded = load_checkpoint(tmp_path)
    batch_ds = get_dataset("shapes", split="test", size=32, n=2)
    from evalkit.data import collate

    batch = collate([batch_ds[0], batch_ds[1]])
    torch.testing.assert_close(loaded.translate(batch).image, t.translate(batch).image, rtol=0, atol=0)
    with pytest.raises(EvalkitError, match="already exists"):
        train(t, train_set, steps=3, out_dir=tmp_path, batch_size=2, progress=False)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EvalkitError, match="corrupt|not an evalkit"):
        load_checkpoint(tmp_path / "broken.pt")


def test_infer_writes_the_outputs_layout(train_set, tmp_path):
    t = build_translator("rabit/ras", cond_channels=train_set.cond_channels, **micro("rabit/ras"))
    test_set = get_dataset("shapes", split="test", size=32, n=3)
    vdir = infer(t, test_set, tmp_path, "jpeg", batch_size=2, progress=False)
    assert vdir == tmp_path / "rabit__ras"
    names = [test_set[i].name for i in range(3)]
    for name in names:
        for sub in ("real", "exemplar", "cond"):
            assert (tmp_path / "inputs" / sub / f"{name}.png").is_file()
        assert (vdir / "images" / f"{name}.jpg").is_file()
        assert Image.open(vdir / "warped" / f"{name}.png").size == (16, 16)
    real = np.asarray(Image.open(tmp_path / "inputs" / "real" / f"{names[0]}.png"))
    expect = ((test_set[0].image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    np.testing.assert_array_equal(real, expect)
    rows = list(csv.DictReader((tmp_path / "inputs" / "pairs.csv").open()))
    assert [r["name"] for r in rows] == names and set(rows[0]) == {"name", "query", "exemplar_name"}
    meta = json.loads((vdir / "meta.json").read_text())
    assert meta["variant"] == "rabit/ras" and meta["image_format"] == "jpeg" and meta["warped"] is True
    with pytest.raises(EvalkitError, match="unknown image format"):
        infer(t, test_set, tmp_path, "webp", progress=False)


def test_cli_train_resume_and_infer(tmp_path):
    runner = CliRunner()
    args = ["train", "--variant", "spade", "--dataset", "shapes", "--size", "32", "--n", "4", "--batch-size", "2",
            "--out", str(tmp_path / "run"), "--json"]
    r = runner.invoke(app, args + ["--steps", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["steps"] == 1
    r = runner.invoke(app, args + ["--steps", "2", "--resume"])
    assert r.exit_code == 0, r.output
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 2
    r = runner.invoke(app, ["infer", "--checkpoint", str(tmp_path / "run"), "--n", "2", "--out", str(tmp_path / "out"),
                            "--json"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "out" / "spade" / "images").glob("*.png"))) == 2
    bad = runner.invoke(app, ["train", "--variant", "nope", "--steps", "1", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown variant" in bad.stderr
    both = runner.invoke(app, ["train", "--variant", "spade", "--steps", "1", "--epochs", "1"])
    assert both.exit_code == 2
    untrainable = runner.invoke(app, ["train", "--variant", "outputs", "--steps", "1", "--out", str(tmp_path / "y")])
    assert untrainable.exit_code == 2 and "not trainable" in untrainable.stderr


def test_checkpoint_rebuilds_the_typed_config_and_has_plain_permissions(train_set, tmp_path):
    import os

    from evalkit.files import plain_mode
    from evalkit.methods.training import save_checkpoint

    overrides = dict(micro("rabit"), position="coord", corr_size=8, losses={"gan": 2.0}, optim={"lr_d": 1e-4})
    t = build_translator("rabit", cond_channels=train_set.cond_channels, seed=3, **overrides)
    path = save_checkpoint(t, tmp_path / "ck" / "last.pt", step=0)
    assert os.stat(path).st_mode & 0o777 == plain_mode()  # not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    loaded = load_checkpoint(path)
    assert loaded.config == t.config and type(loaded.config).__name__ == "RABITConfig"
    assert (loaded.config.position, loaded.config.correspondence.corr_size, loaded.config.losses.gan,
            loaded.config.optim.lr_d) == ("coord", 8, 2.0, 1e-4)
    for key, value in t.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_each_epoch_redraws_the_training_pairs_and_train_calls_set_epoch(tmp_path):
    """Two epochs give different draws (self-reference or not, the self-reference crop), the same
    epoch the same ones, the scenes never change; ``train`` tells the dataset each new epoch
    (seen through a spy: steps 0-1 are epoch 0, steps 2-3 epoch 1 at 4 samples / batch 2)."""
    ds = get_dataset("shapes", split="train", size=32, n=16, seed=0)
    draws = {}
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        draws.setdefault(epoch, []).append([(bool(ds[i].self_ref), ds[i].exemplar.sum().item()) for i in range(16)])
    assert draws[0][0] == draws[0][1] and draws[0][0] != draws[1][0]
    assert [a for a, _ in draws[0][0]] != [a for a, _ in draws[1][0]]  # the 30 % self-references move
    ds.set_epoch(0)
    a0 = ds[0].image
    ds.set_epoch(5)
    torch.testing.assert_close(ds[0].image, a0)  # the data instance is fixed

    class Spy(torch.utils.data.Dataset):
        def __init__(self):
            self.inner, self.epochs = get_dataset("shapes", split="train", size=32, n=4, seed=0), []
            self.name = "spy"

        def set_epoch(self, epoch):
            self.epochs.append(epoch)
            self.inner.set_epoch(epoch)

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            return self.inner[i]

    spy = Spy()
    t = build_translator("spade", cond_channels=spy.inner.cond_channels, **micro("spade"))
    train(t, torch.utils.data.Subset(spy, range(4)), steps=4, out_dir=tmp_path, batch_size=2, progress=False)
    assert spy.epochs == [0, 1]


def test_a_runs_data_instance_is_its_dataset_seed_not_the_training_seed():
    """``datasets[].data_seed`` fixes the scenes for every seed of a run (the run's seeds vary
    initialisation and order only)."""
    from evalkit.config import DatasetConfig
    from evalkit.pipeline import _dataset

    d = DatasetConfig(name="shapes", size=32, n_train=4, n_test=2)
    a, b = _dataset(d, "test", 0), _dataset(d, "test", 7)
    torch.testing.assert_close(a[0].image, b[0].image)
    other = _dataset(DatasetConfig(name="shapes", size=32, n_train=4, n_test=2, data_seed=3), "test", 0)
    assert not torch.equal(other[0].image, a[0].image)
