"""Tuning: when INT8 fails the gate, search recipes and layers kept in FP32 for one it passes, with its speed cost."""
