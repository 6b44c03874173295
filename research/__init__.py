"""Experiments on the public API only (see benchmarks/BENCHMARKS.md, "Research scripts")."""
