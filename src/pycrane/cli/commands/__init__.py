"""One module per command (or command group); imported lazily by :mod:`pycrane.cli._app`."""
