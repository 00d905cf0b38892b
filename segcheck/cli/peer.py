"""`segcheck peer install | where`: the peer runtimes' own virtualenv (ONNX Runtime, OpenVINO, NNCF), made from the
pins shipped in segcheck (peers/peer-requirements.txt), in $SEGCHECK_PEER_ENV or ~/.cache/segcheck-peers/<pins>."""

from __future__ import annotations

import sys

from ..config import options
from ..errors import SegcheckError
from ..peers import environment as peers
from ..peers.network_install import install


def parser() -> options.Parser:
    p = options.Parser(prog="segcheck peer", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("action", choices=("install", "where"),
                   help="install: create the peer environment (from the package registry); where: print it and whether it is ready")
    return p


def main(argv, out=sys.stdout) -> int:
    args = parser().parse_args(argv)
    folder = peers.environment_folder()
    if args.action == "install":
        install(folder, out)
        return 0
    python = peers.python_of(folder)
    if python is None:
        raise SegcheckError(peers.missing_message(folder))
    print(f"peer environment: {folder} (python {python}; pins {peers.requirements_file()})", file=out)
    return 0
