"""The gate's tests, shipped with the package: the pytest plugin adds them to a configured project's run.

CHECKS names the check each test function stands for, per model (formatted with its parameters).
"""

CHECKS = {
    "test_accuracy": "{precision}-accuracy",
    "test_int8_drop": "int8-drop",
    "test_int8_class_drop": "int8-class-drop",
    "test_int8_calibration_table": "int8-ranges",
    "test_int8_layer_error": "int8-layers",
    "test_outputs_digest": "{precision}-digest",
    "test_int8_graph_is_quantized_and_calibrated": "int8-graph",
    "test_fp32_graph_is_fused_on_onednn": "fp32-graph",
    "test_seeded_fp32_model_really_segments": "fp32-segments",
    "test_deploy_round_trip": "deploy",
    "test_latency": "{precision}-latency",
    "test_int8_speedup": "speedup",
}
