"""Wires segcheck's pytest options and fixtures; the logic lives in the segcheck package."""

from pathlib import Path

import pytest

from segcheck import baselines

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    group = parser.getgroup("segcheck")
    group.addoption("--baselines", default=str(ROOT / "baselines.json"), help="baseline table (default: %(default)s)")


@pytest.fixture(scope="session")
def baseline_table(pytestconfig):
    return baselines.load(pytestconfig.getoption("--baselines"))
