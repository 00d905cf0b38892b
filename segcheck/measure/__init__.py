"""Measurement: metrics, evaluation, latency, per-layer error, calibration tables, and the environment."""
