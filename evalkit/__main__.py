"""``python -m evalkit ...`` (and ``torchrun -m evalkit run CONFIG``): the evalkit CLI."""

from evalkit.cli import app

app(prog_name="evalkit")
