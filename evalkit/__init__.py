"""evalkit: benchmark and evaluation suite for exemplar-based image translation.

One installed namespace: the repository's top-level folders ``methods/``, ``baselines/``,
``reports/`` and ``cli.py`` are the subpackages ``evalkit.methods``, ``evalkit.baselines``,
``evalkit.reports`` and the module ``evalkit.cli``. A wheel puts them inside
``site-packages/evalkit/`` (see ``setup.py``); in a source checkout (editable install,
or tests run from the repository) the package path below also searches the checkout's
root, so the same import names resolve to the same files.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "cli.py").is_file() and \
        (_CHECKOUT / "methods" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 - the package's own search path
