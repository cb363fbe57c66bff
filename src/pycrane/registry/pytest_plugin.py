"""pytest plugin: fixtures that start a pycrane registry (being built; see issue 6)."""
