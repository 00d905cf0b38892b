"""Measurement: metrics, evaluation, latency, per-layer error, calibration tables, memory, and the environment."""
