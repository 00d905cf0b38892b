"""`segcheck peer install | where`: the peer runtimes' own virtualenv (ONNX Runtime, OpenVINO, NNCF), made from the
pins shipped in segcheck (measure/peer-requirements.txt), in $SEGCHECK_PEER_ENV or <cache>/peer-env."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import options
from ..config.run import default_dir
from ..errors import SegcheckError
from ..measure import peers


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segcheck peer", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("action", choices=("install", "where"),
                   help="install: create the peer environment (from the package registry); where: print it and whether it is ready")
    options.add_to_argparse(p, [o for o in options.RUN if o.dest == "segcheck_cache"])
    return p


def main(argv, out=sys.stdout) -> int:
    args = parser().parse_args(argv)
    cache = args.segcheck_cache
    folder = peers.environment_folder(Path(cache).expanduser() if cache else default_dir())
    if args.action == "install":
        peers.install(folder, out)
        return 0
    python = peers.python_of(folder)
    if python is None:
        raise SegcheckError(peers.missing_message(folder))
    print(f"peer environment: {folder} (python {python}; pins {peers.requirements_file()})", file=out)
    return 0
