"""Where the alignment modules check their inputs' values.

Shape and dtype checks are free and always run. Value checks (finite features, scores and
costs, non-negative masses) each scan a whole tensor and, on an accelerator, synchronise with
the host; they run at the API boundary, when user code calls an alignment function or module,
and are skipped inside :func:`trusted`, which the translators' :meth:`train_step` and
:meth:`translate` enter: there the inputs are the translator's own features, and training
checks its losses for non-finite values every step (:func:`evalkit.methods.training.train`).
"""

from __future__ import annotations

import contextlib
import contextvars

_TRUSTED = contextvars.ContextVar("evalkit_alignment_trusted", default=False)


@contextlib.contextmanager
def trusted():
    """Skip the value checks of the alignment modules within this block (this thread / task)."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def check_values() -> bool:
    """True outside :func:`trusted`: the caller scans its inputs' values."""
    return not _TRUSTED.get()
