"""Data: the dataset kinds segcheck reads, GluonCV's loaders over them, and the synthetic writer (the lowest layer)."""
