"""segcheck: an accuracy and latency gate for INT8-quantized GluonCV semantic segmentation."""

__version__ = "0.1.0"
