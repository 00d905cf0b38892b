"""Models: GluonCV networks and weights (build), seeded fits, quantization, export, graphs, the cache, and the seed's pipeline."""
