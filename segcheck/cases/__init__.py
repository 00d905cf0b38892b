"""A run's model cases: each model's FP32, INT8 and peer parts made once, and what a run will cost."""
