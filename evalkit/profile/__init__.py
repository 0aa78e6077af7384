"""Memory/time profiles of the alignment modules (``evalkit profile memory``; docs/alignment.md)."""

from evalkit.profile.memory import (MODULES, ProfileConfig, ProfileRow, fit_exponent,
                                    plot_profile, profile_memory, rows_as_dicts, run_case,
                                    theory_elements)

__all__ = ["MODULES", "ProfileConfig", "ProfileRow", "fit_exponent", "plot_profile",
           "profile_memory", "rows_as_dicts", "run_case", "theory_elements"]
