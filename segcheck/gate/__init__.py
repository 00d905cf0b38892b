"""The gate: its checks and verdicts, the baseline table and the golden records they compare against."""
