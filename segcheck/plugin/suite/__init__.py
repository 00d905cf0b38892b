"""The gate's tests, shipped with the package: the pytest plugin adds them to a configured project's run
(segcheck.gate.checks names the check each of them judges)."""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent  # where the plugin finds the suite's modules
