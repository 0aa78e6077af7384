"""Journey 7: every command behaves like the others, and everything the docs name exists.

Before: `evalkit -h` was "No such option: -h"; no shell completion; `profile memory`
defaulted to --device cpu and wrote its plot with --plot; it was silent on stderr for
minutes when stderr was a log file; the random-VGG warning printed once per variant with its
source line; the README named `evalkit weights status`, which does not exist, and the help of
`train --variant` named `evalkit train --list-variants`, which does not either. (The README's
claim that clean-fid fails with "Imaginary component" at 16 images is re-checked in
tests/benchmarks/bench_cleanfid_claim.py: it does not reproduce with SciPy 1.17.1.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import typer

from journey_helpers import cli
from evalkit.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _tree():
    return typer.main.get_command(app)


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            yield from _commands(cmd, (*path, name))


def test_help_version_and_completion(monkeypatch):
    for args in ([], ["report"], ["report", "compare"], ["evaluate"], ["fid"]):
        short, long = cli(*args, "-h"), cli(*args, "--help")
        assert short.stdout == long.stdout and "Usage:" in short.stdout
    assert re.fullmatch(r"evalkit \d+\.\d+\.\d+\n", cli("--version").stdout)
    # typer detects the shell from the parent process (shellingham), which a test runner may hide
    monkeypatch.setattr("typer.completion._get_shell_name", lambda: "bash")
    script = cli("--show-completion").stdout
    assert "_EVALKIT_COMPLETE" in script or "complete" in script


def test_the_same_thing_has_the_same_option_everywhere():
    for path, cmd in _commands(_tree()):
        opts = {o: p for p in cmd.params for o in getattr(p, "opts", [])}
        where = " ".join(path)
        if "--device" in opts:
            assert opts["--device"].default == "auto", f"evalkit {where}: --device default"
        assert "--metric" not in opts or "--metrics" in opts, f"evalkit {where}: --metric without --metrics"
        for p in cmd.params:  # an output path is --out (aliases allowed)
            if p.name in ("out", "plot", "output"):
                assert "--out" in p.opts, f"evalkit {where}: output option {p.opts}"


def test_profile_memory_reports_progress_on_stderr_and_json_alone_on_stdout(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "evalkit", "profile", "memory", "--modules", "cosine", "--sizes", "8",
                        "--json", "--out", str(tmp_path / "p.png")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "profiling 1 case(s) on cpu" in r.stderr and "profiled 1/1: cosine 8x8: ok" in r.stderr
    assert [row["module"] for row in json.loads(r.stdout)] == ["cosine"]
    assert (tmp_path / "p.png").is_file()


def test_a_warning_is_one_line_printed_once(journey_run):
    stderr = journey_run[1]
    lines = [ln for ln in stderr.splitlines() if "RANDOMLY INITIALISED" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert "self.__dict__" not in stderr and "UserWarning" not in stderr


def _doc_commands() -> list[tuple[Path, str]]:
    """Every ``evalkit ...`` command line the README and docs/ name: lines of code blocks
    and inline code spans."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        lines = [ln.strip() for b in blocks for ln in b.splitlines()]
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for ln in lines:
            ln = re.sub(r"^(\$ |\.venv/bin/|python -m |torchrun .*? -m )", "", ln)
            if ln.startswith("evalkit ") or ln == "evalkit":
                found.append((doc, ln.split("#")[0].strip()))
    return found


def _help_commands() -> list[tuple[str, str]]:
    """Every ``evalkit ...`` the help texts of the commands and their options name."""
    found = []
    for path, cmd in _commands(_tree()):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for text in texts:
            for ln in re.findall(r"`(evalkit [^`]+)`|\((evalkit [^)]+)\)", text):
                found.append((f"help of evalkit {' '.join(path)}", next(x for x in ln if x)))
    return found


def test_every_command_and_flag_the_docs_name_exists():
    tree = _tree()
    commands = _doc_commands()
    assert len(commands) > 30
    for doc, line in commands + [(Path(where), line) for where, line in _help_commands()]:
        tokens = line.replace("\\|", "|").split()[1:]
        groups = [tree]
        path: list[str] = []
        for tok in tokens:
            names = tok.split("|")
            group = groups[-1]
            if hasattr(group, "commands") and all(n in group.commands for n in names):
                path.append(names[0])
                groups.append(group.commands[names[0]])
                for n in names[1:]:  # alternatives: each one exists and has help
                    assert cli(*path[:-1], n, "--help").exit_code == 0
                continue
            break
        cmd = groups[-1]
        cli(*path, "--help")
        opts = {o for p in cmd.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
        opts |= {"--help", "-h", "--version"}
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
            assert flag in opts, f"{doc.name}: `{line}`: evalkit {' '.join(path)} has no {flag}"
        for file in re.findall(r"(?<![\w/.-])((?:configs|docs)/[\w./-]+\.(?:toml|yaml|md))", line):
            assert (ROOT / file).is_file(), f"{doc.name}: `{line}` names {file}"
