"""The reproducible benchmark of issue 5: `python -m bench` (see bench/README.md)."""
