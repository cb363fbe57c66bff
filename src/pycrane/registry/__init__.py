"""pycrane's own OCI distribution registry server (being built; see issue 6)."""
