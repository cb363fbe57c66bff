"""Harness for ``bench/run.py``: registries, image generation, measured subprocesses, reports.

Kept outside the ``pycrane`` package on purpose: the harness must measure pycrane
as a user runs it (``python -m pycrane`` in a fresh process), and must keep working
while the libraries it measures are still being written.
"""
