"""Benchmarks: fastmix beside the baselines users would otherwise run (``fastmix bench``)."""
