"""Files the data layer reads and writes: listings that are not UTF-8, broken manipulation sets,
manipulation writes that cannot start (one EvalkitError each, nothing written)."""

from __future__ import annotations

import json

import pytest

from evalkit.data import get_dataset
from evalkit.data.manipulation import write_manipulation_set
from evalkit.data.pairs import read_pair_list, write_pair_list
from evalkit.errors import EvalkitError


def test_pair_list_round_trip_and_non_utf8(tmp_path):
    pairs = {"a/x.jpg": ["b.jpg", "c.jpg"], "y.jpg": ["z.jpg"]}
    path = write_pair_list(tmp_path / "sub" / "pairs.txt", pairs)
    assert path.read_text(encoding="utf-8") == "a/x.jpg,b.jpg,c.jpg\ny.jpg,z.jpg\n"
    assert read_pair_list(path) == pairs
    path.write_bytes(b"q.jpg,\xff\xfe.jpg\n")
    with pytest.raises(EvalkitError, match=r"pair list .*pairs\.txt is not UTF-8 text \(byte 6\)"):
        read_pair_list(path)


def test_celebahq_listing_not_utf8(tmp_path):
    (tmp_path / "val.txt").write_bytes(b"12\n\xff\n")
    with pytest.raises(EvalkitError, match=r"split listing .*val\.txt is not UTF-8"):
        get_dataset("celebahq", root=tmp_path, size=16)


@pytest.mark.parametrize("meta", [{}, {"source": "shapes", "num_classes": "many", "cond_channels": 4,
                                       "instance": False}])
def test_manipulation_set_with_a_broken_meta(tmp_path, meta):
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (tmp_path / "edits.csv").write_text("name,source\ns0,x\n", encoding="utf-8")
    with pytest.raises(EvalkitError, match="not a manipulation set"):
        get_dataset("manipulation", root=tmp_path, size=16)


@pytest.mark.parametrize("kw,match", [
    (dict(size=4), "--size 4"), (dict(n=0), "--n 0"), (dict(seed=-1), "--seed -1"),
    (dict(max_shift=-0.1), "--max-shift"), (dict(scale_range=(1.2, 0.8)), "--scale-min"),
    (dict(scale_range=(0.0, 1.0)), "--scale-min"),
])
def test_manipulation_bad_arguments_write_nothing(tmp_path, kw, match):
    args = dict(size=16, n=1) | kw
    with pytest.raises(EvalkitError, match=match):
        write_manipulation_set("shapes", None, tmp_path / "out", progress=False, **args)
    assert list(tmp_path.iterdir()) == []


def test_manipulation_into_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(EvalkitError, match="file"):
            write_manipulation_set("shapes", None, out, size=16, n=1, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    meta = write_manipulation_set("shapes", None, tmp_path / "ok", size=16, n=1, progress=False)
    assert meta["n"] == 1 and len(get_dataset("manipulation", root=tmp_path / "ok", size=16)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ok"]  # the temp folder is gone
