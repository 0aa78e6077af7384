"""Checks the commands run on their path options before any work: one EvalkitError line each."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from evalkit.errors import EvalkitError


def out_folder(path: Path, option: str = "--out") -> Path:
    """``path`` is a folder or can be created as one (no file at it or above it), on a file
    system that accepts writes (:func:`evalkit.files.check_writable`)."""
    from evalkit.files import check_writable

    _no_file_in_the_way(Path(path), option)
    check_writable(path, directory=True)
    return Path(path)


def _no_file_in_the_way(path: Path, option: str) -> None:
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"is below the file {existing}"
        raise EvalkitError(f"{option} {path}: {where}; give a folder (it is created when missing)", path=path)


def out_file(path: Path, option: str = "--out") -> Path:
    """``path`` can be written as a file: not a folder, and its folder is or can become one."""
    from evalkit.files import check_writable

    path = Path(path)
    if path.is_dir():
        raise EvalkitError(f"{option} {path}: is a folder; give a file name", path=path)
    _no_file_in_the_way(path.parent, option)
    check_writable(path)
    return path


@contextlib.contextmanager
def reading(path: Path, what: str):
    """Turn the errors of reading ``path`` as ``what`` (a folder, a non-UTF-8 file, a file
    that is no SQLite database, an unreadable file) into one EvalkitError line."""
    try:
        yield
    except IsADirectoryError as err:
        raise EvalkitError(f"{path}: is a folder; expected {what}", path=path) from err
    except UnicodeDecodeError as err:
        raise EvalkitError(f"{path}: not UTF-8 text (byte {err.start}); expected {what}", path=path) from err
    except sqlite3.DatabaseError as err:
        raise EvalkitError(f"{path}: not {what} ({err})", path=path) from err
    except PermissionError as err:
        raise EvalkitError(f"{path}: permission denied reading {what}", path=path) from err
