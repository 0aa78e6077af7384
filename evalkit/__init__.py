"""evalkit: benchmark and evaluation suite for exemplar-based image translation."""

__version__ = "0.1.0"
