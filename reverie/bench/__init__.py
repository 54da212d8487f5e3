"""Benchmarks that drive the same library calls users run, and write their figures as JSON."""
