"""Packaging (issue 10, item 1): one installed namespace.

A wheel built from the repository holds ``evalkit/`` and its dist-info only (no top-level
``methods``, ``reports``, ``baselines`` or ``cli``), every source package of the mapped
folders, and the package data; installed on its own (``pip install --target``) it imports
and runs from a folder outside the checkout, so nothing relies on the working directory.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"evalkit": "evalkit", "methods": "evalkit/methods", "baselines": "evalkit/baselines",
          "reports": "evalkit/reports"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("evalkit-*.whl")
    return whl


def test_wheel_holds_one_namespace_and_every_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"evalkit", next(t for t in top if t.endswith(".dist-info"))}, top
    for src, dest in MAPPED.items():  # every package folder of the checkout is in the wheel
        for init in (ROOT / src).rglob("__init__.py"):
            rel = init.relative_to(ROOT / src).as_posix()
            assert f"{dest}/{rel}" in names, f"{src}/{rel} missing from the wheel: add it to pyproject's packages"
    for data in ("evalkit/cli.py", "evalkit/__main__.py", "evalkit/reports/data/paper_tables.csv",
                 "evalkit/study/templates/study.html", "evalkit/study/static/study.js"):
        assert data in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "evalkit = evalkit.cli:main" in entry


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    code = ("import evalkit, evalkit.cli, evalkit.methods.registry as m, evalkit.reports.paper_tables as p; "
            "assert evalkit.__file__.startswith(%r), evalkit.__file__; "
            "assert len(p.load()) > 0 and 'rabit' in m.list_variants(); print(evalkit.__version__)" % str(site))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    version = subprocess.run([sys.executable, "-m", "evalkit", "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert version.returncode == 0 and version.stdout.strip() == f"evalkit {run.stdout.strip()}", version.stderr
