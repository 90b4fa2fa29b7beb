"""Benchmarks and evaluations: ``make eval`` (detector quality), ``make bench`` (speed)."""
