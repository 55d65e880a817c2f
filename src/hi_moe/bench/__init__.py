"""Benchmarks users run against their own provider: `hi-moe bench ...`."""
