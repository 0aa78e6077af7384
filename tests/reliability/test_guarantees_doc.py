"""docs/guarantees.md: every guarantee row names at least one test, and every named test exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF = re.compile(r"`((?:tests/(?:\w+/)*)?test_\w+\.py)::(\w+)`")


def test_every_guarantee_names_existing_tests():
    rows = [line for line in (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith(("| guarantee", "| ---"))]
    assert len(rows) >= 20
    for row in rows:
        refs = REF.findall(row)
        assert refs, f"a guarantee without a test: {row}"
        for file, name in refs:
            path = ROOT / file if file.startswith("tests/") else ROOT / "tests" / "reliability" / file
            assert path.is_file() and re.search(rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M), \
                f"{file}::{name} named in docs/guarantees.md does not exist"
