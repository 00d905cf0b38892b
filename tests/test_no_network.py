"""The default run never touches the network: tests/plugins/nonetwork.py blocks and records every attempt beyond loopback.

Every destination here is a documentation address (192.0.2.1, 2001:db8::1) or name (example.com): the plugin
refuses the call before anything leaves, so none of these tests sends a packet or a DNS query.
"""

import socket
import subprocess
import sys

import pytest

from nonetwork import RECORD, NetworkBlocked, expect_blocked, is_loopback

IPV4, IPV6 = ("192.0.2.1", 80), ("2001:db8::1", 443, 0, 0)


def family(address):
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


@pytest.mark.parametrize("address", [IPV4, IPV6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("call", ["connect", "connect_ex"])
def test_a_tcp_connection_beyond_loopback_is_refused_before_it_starts(address, call):
    with socket.socket(family(address), socket.SOCK_STREAM) as sock, expect_blocked(), pytest.raises(NetworkBlocked, match="block the network"):
        getattr(sock, call)(address)


@pytest.mark.parametrize("address", [IPV4, IPV6], ids=["ipv4", "ipv6"])
def test_create_connection_beyond_loopback_is_refused(address):
    with expect_blocked(), pytest.raises(NetworkBlocked, match="block the network"):
        socket.create_connection(address[:2], timeout=1)


@pytest.mark.parametrize("address", [IPV4, IPV6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("call", ["sendto", "sendto-flags", "sendmsg"])
def test_a_datagram_beyond_loopback_is_refused(address, call):
    send = {"sendto": lambda s: s.sendto(b"x", address), "sendto-flags": lambda s: s.sendto(b"x", 0, address),
            "sendmsg": lambda s: s.sendmsg([b"x"], [], 0, address)}[call]
    with socket.socket(family(address), socket.SOCK_DGRAM) as sock, expect_blocked(), pytest.raises(NetworkBlocked, match="block the network"):
        send(sock)


@pytest.mark.parametrize("lookup", [
    lambda: socket.getaddrinfo("example.com", 443),
    lambda: socket.getaddrinfo(host="example.com", port=443),
    lambda: socket.gethostbyname("example.com"),
    lambda: socket.gethostbyname_ex("example.com"),
    lambda: socket.gethostbyaddr("example.com"),
    lambda: socket.gethostbyaddr("192.0.2.1"),
    lambda: socket.getnameinfo(IPV4, 0),
], ids=["getaddrinfo", "getaddrinfo-keywords", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "gethostbyaddr-address",
        "getnameinfo"])
def test_names_are_not_looked_up(lookup):
    with expect_blocked(), pytest.raises(NetworkBlocked, match="block the network"):
        lookup()


@pytest.mark.parametrize("host", ["127.example.com", "127.0.0.1.example.com", "localhost.example.com"])
def test_a_name_that_looks_like_loopback_is_not_loopback(host):
    assert not is_loopback(host)
    with expect_blocked(), pytest.raises(NetworkBlocked):
        socket.getaddrinfo(host, 80)
    with socket.socket() as sock, expect_blocked(), pytest.raises(NetworkBlocked):
        sock.connect((host, 80))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST", b"127.0.0.1"])
def test_loopback_is_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_tcp_and_udp_still_work(host):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection((host, server.getsockname()[1]), timeout=5) as client:
            client.sendall(b"tcp")
            with server.accept()[0] as accepted:
                assert accepted.recv(3) == b"tcp"
    with socket.socket(type=socket.SOCK_DGRAM) as receiver, socket.socket(type=socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        sender.sendto(b"udp", receiver.getsockname())
        assert receiver.recv(3) == b"udp"
    assert "127.0.0.1" in {info[4][0] for info in socket.getaddrinfo("localhost", 80, socket.AF_INET)}


def test_unix_sockets_still_work(tmp_path):
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(str(tmp_path / "stream"))
        server.listen(1)
        client.connect(str(tmp_path / "stream"))
        client.sendall(b"stream")
        with server.accept()[0] as accepted:
            assert accepted.recv(6) == b"stream"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        receiver.bind(str(tmp_path / "datagram"))
        sender.sendto(b"datagram", str(tmp_path / "datagram"))
        assert receiver.recv(8) == b"datagram"


def test_a_caught_attempt_is_still_recorded_with_its_test(request):
    attempts = request.config.stash[RECORD].attempts
    with expect_blocked():
        try:
            socket.create_connection(IPV4, timeout=1)
        except OSError:
            pass
        assert (attempts[-1].call, attempts[-1].test) == ("getaddrinfo", request.node.nodeid)
        assert "192.0.2.1" in attempts[-1].destination
    assert not [a for a in attempts if a.test == request.node.nodeid]  # taken back


def test_expect_blocked_fails_without_an_attempt():
    with pytest.raises(AssertionError, match="no network attempt"), expect_blocked():
        pass


SWALLOWS = """
import socket

def test_swallows_the_error():
    with socket.socket() as sock:
        try:
            sock.connect(("192.0.2.1", 80))
        except OSError:
            pass
"""


def test_a_caught_attempt_fails_the_run(pytester):
    pytester.makepyfile(test_swallows=SWALLOWS)
    with expect_blocked():  # the inner run's attempt is also recorded in this (outer) run
        result = pytester.runpytest_inprocess("-p", "nonetwork", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= network attempts =*", "test_swallows.py::test_swallows_the_error: connect to ('192.0.2.1', 80)",
                                 "1 attempt(s) to reach the network beyond loopback: the run fails"])


def test_an_inner_run_keeps_the_outer_block_and_record(pytester):
    connect = socket.socket.connect
    pytester.makepyfile(test_same=f"import socket\n\ndef test_same_block():\n    assert id(socket.socket.connect) == {id(connect)}\n")
    result = pytester.runpytest_inprocess("-p", "nonetwork", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert "network attempts" not in result.stdout.str()
    assert socket.socket.connect is connect and connect.segcheck_blocked  # neither patched twice nor lifted
    with socket.socket() as sock, expect_blocked(), pytest.raises(NetworkBlocked):
        sock.connect(IPV4)


def test_the_block_covers_the_whole_session_and_not_other_processes():
    # A resolver call on an address literal makes no query: blocked here, answered in a process without the plugin.
    # The plugin guards this process only; the network namespace of .ci/run (loopback alone) covers subprocesses.
    with expect_blocked(), pytest.raises(NetworkBlocked):
        socket.gethostbyname("192.0.2.1")
    done = subprocess.run([sys.executable, "-c", "import socket; print(socket.gethostbyname('192.0.2.1'))"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "192.0.2.1"
