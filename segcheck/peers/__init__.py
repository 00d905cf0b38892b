"""The peer runtimes (ONNX Runtime, OpenVINO): their virtualenv, the runner protocol and the scoring of their runs."""
