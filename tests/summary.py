"""Adds up the pytest runs of tests/run.sh (JUnit XML files) into counts by layer and one closing line."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path


def layer(classname: str) -> str:
    if classname.startswith("tests.e2e"):
        return "end-to-end"
    if classname.startswith("tests.unit"):
        return "unit"
    return "integration"


def main(paths: list[str]) -> int:
    totals: Counter = Counter()
    by_layer: Counter = Counter()
    for path in paths:
        run = Path(path).stem
        for case in ElementTree.parse(path).getroot().iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped"
            totals[outcome] += 1
            by_layer[(run, layer(case.get("classname", "")), outcome)] += 1
    for (run, name, outcome), count in sorted(by_layer.items()):
        print(f"  {run:8} {name:12} {outcome:8} {count}")
    print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 0 if totals["passed"] and not totals["failed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
