"""Measurement: metrics, evaluation, latency, per-layer error, calibration tables, the environment, and model cases."""
