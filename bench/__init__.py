"""Benchmarks: figures to compare with DESIGN.md, run by hand or with `make bench`; never tests."""
