"""``python -m pycrane``: the command line."""

from pycrane.cli import run

run()
