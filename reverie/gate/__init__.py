"""The gate: probes and metrics that decide whether a night's candidate may serve."""
