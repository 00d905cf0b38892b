"""Models: build (GluonCV networks and weights), fit (seeded weights), quantize, export, cache."""
