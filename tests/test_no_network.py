"""The default run never touches the network: tests/nonetwork.py blocks every non-loopback connection for it."""

import socket
import subprocess
import sys

import pytest

from nonetwork import NetworkBlocked


@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("2001:db8::1", 443)], ids=["ipv4", "ipv6"])
def test_a_connection_beyond_loopback_is_refused_before_it_starts(address):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, pytest.raises(NetworkBlocked, match="block the network"):
        sock.connect(address)


def test_names_are_not_resolved_and_loopback_still_works():
    with pytest.raises(socket.gaierror, match="block the network"):
        socket.getaddrinfo("pypi.org", 443)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_the_block_covers_the_whole_session_and_not_other_processes():
    assert getattr(socket.socket.connect, "segcheck_blocked", False)
    done = subprocess.run([sys.executable, "-c", "import socket; print(getattr(socket.socket.connect, 'segcheck_blocked', False))"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
