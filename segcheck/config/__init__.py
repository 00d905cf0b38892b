"""Configuration: the options, the project file and its strict reader, recipes, and each run's resolved models."""
