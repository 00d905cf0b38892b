"""Outcomes of a pytest run read from its JUnit XML."""

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """One test: passed | failed | skipped; `problem` is failure (raised in the test), error (in its setup or
    teardown) or '' ; `message` the report's one line (for a failure, the exception's type and message)."""

    outcome: str
    message: str = ""
    problem: str = ""


def details(junit: Path) -> dict:
    """{test name: Outcome}."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failure, error, skipped = case.find("failure"), case.find("error"), case.find("skipped")
        problem = failure if failure is not None else error
        if problem is not None:
            found[case.get("name")] = Outcome("failed", problem.get("message", ""), "failure" if failure is not None else "error")
        elif skipped is not None:
            found[case.get("name")] = Outcome("skipped", skipped.get("message", ""))
        else:
            found[case.get("name")] = Outcome("passed")
    return found


def outcomes(junit: Path) -> dict:
    """{test name: (passed | failed | skipped, message)}."""
    return {name: (o.outcome, o.message) for name, o in details(junit).items()}
