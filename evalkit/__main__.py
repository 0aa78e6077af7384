"""``python -m evalkit ...`` (and ``torchrun -m evalkit run CONFIG``): the evalkit CLI."""

from evalkit.cli import main

main()
