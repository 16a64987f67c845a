"""Benchmarks: each compares side by side in one run and writes its results to bench/results/."""
