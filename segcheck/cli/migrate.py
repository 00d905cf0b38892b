"""`segcheck migrate [BASELINES]`: rewrite a baseline file and its golden records of an older schema as this segcheck
reads them (schema 2 keys INT8 apart from FP32), atomically, showing the diff."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import atomic
from ..config import options
from ..config.project import find
from ..errors import SegcheckError
from ..gate import baselines, golden


def main(argv, out=sys.stdout) -> int:
    p = options.Parser(prog="segcheck migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("baselines", nargs="?", help="the baseline file (default: the configuration's in this folder)")
    args = p.parse_args(argv)
    path = args.baselines
    if path is None:
        project = find(Path.cwd())
        if project is None:
            raise SegcheckError(f"no segcheck configuration in {Path.cwd()} names a baseline file; pass its path")
        path = project.baselines
    # both migrated in memory first, so that a file that cannot be migrated stops the command before either is written
    found, beside = baselines.migration(path), golden.migration(path)
    diff = baselines.write(path, *found) if found else ""
    out.write(diff or f"{path}: already schema {baselines.SCHEMA}\n")
    if beside:
        print(f"golden records migrated: {atomic.write_text(*beside)}", file=out)
    return 0
