"""Outcomes of a pytest run read from its JUnit XML: {test name: (passed | failed | skipped, message)}."""

import xml.etree.ElementTree as ET
from pathlib import Path


def outcomes(junit: Path) -> dict:
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        outcome = "failed" if problem is not None else "skipped" if skipped is not None else "passed"
        message = (problem if problem is not None else skipped).get("message", "") if outcome != "passed" else ""
        found[case.get("name")] = (outcome, message)
    return found
