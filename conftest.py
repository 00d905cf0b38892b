"""Wiring for segcheck's own tests: the hypothesis profiles (pytester, for the self-checks, is enabled in pyproject.toml).

The gate is the segcheck pytest plugin (segcheck.plugin, entry point pytest11), configured for this
repository by segcheck.toml: the tutorial's six models. The self-checks' inner runs skip this file (--noconftest,
tests/plugins/inner.py): the profiles it registers are process-wide, and a conftest imported by an inner run would keep
that run's configuration alive.
"""

from hypothesis import Phase, settings

# Hypothesis: "segcheck" is the suite's default, derandomized (each test's examples follow from its own name, the same
# every run) and without an example database (no run replays another's); "segcheck-selfcheck" only needs a failure
# found, not shrunk (shrinking costs 6-20 s per inner run of the self-checks).
settings.register_profile("segcheck", deadline=None, max_examples=60, derandomize=True, database=None)
settings.register_profile("segcheck-selfcheck", settings.get_profile("segcheck"), database=None,
                          phases=(Phase.explicit, Phase.reuse, Phase.generate))


def pytest_configure(config):
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("segcheck")
