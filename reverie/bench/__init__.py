"""Benchmarks that drive the same library calls users run, and return their figures (the
`reverie bench` commands in reverie/cli/bench.py write them as JSON)."""
