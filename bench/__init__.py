"""chainserve's streaming benchmark: `python -m bench.run` (see bench/README.md)."""
