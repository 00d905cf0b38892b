"""A pytest plugin that blocks and records every attempt to reach the network beyond loopback, for a whole session.

Registered by pyproject.toml (-p nonetwork): the default run proves that the gate and its tests never touch the
network; `segcheck fetch` is tested against servers its tests start on 127.0.0.1.

What it blocks, in this process: TCP and UDP through `socket.socket` (connect, connect_ex, sendto, sendmsg; so also
`socket.create_connection`, urllib3, requests, asyncio) to any host but loopback, and the name service (getaddrinfo,
gethostbyname, gethostbyname_ex, gethostbyaddr, getnameinfo) for any host but loopback. Loopback is "localhost" and
the address literals of 127.0.0.0/8 and ::1; a name such as "127.example.com" is not. AF_UNIX sockets are untouched.
A blocked call raises NetworkBlocked (an OSError, as a socket error would be) before anything leaves.

What it records: every blocked call (which call, the destination, the test running), on the config
(`config.stash[RECORD]`), even when the code caught NetworkBlocked. A session that made one ends with exit status 1
and a red "network attempts" section listing them. A test that makes an attempt on purpose takes it back with
`with expect_blocked(): ...`, which fails unless an attempt was made inside it.

Inner pytest runs in this process (pytester) that load the plugin keep the outer run's block and record: their own
record gets the attempts made while they run (and fails them), and so does the outer run's.

What it cannot block: other processes and code that reaches the C socket module directly. The CI (.ci/run) runs
the tests in a network namespace that holds only loopback, which covers those.
"""

import ipaddress
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

OUTSIDE = "outside any test"


@dataclass
class Attempt:
    """One blocked call: which call, to where, during which test."""

    call: str
    destination: str
    test: str


@dataclass
class Record:
    """One pytest run's attempts, the test it runs now, and whether this run put the block in force."""

    attempts: list = field(default_factory=list)
    test: str = OUTSIDE
    holds_block: bool = False


RECORD = pytest.StashKey[Record]()
_active: list[Record] = []  # the record of every run configured in this process now, outermost first
_originals: dict = {}  # (owner, name): the socket function replaced, while the block is in force


class NetworkBlocked(OSError):
    """Raised instead of any connection, datagram or name lookup beyond loopback."""


def is_loopback(host) -> bool:
    """Whether `host` is "localhost" or an address literal of 127.0.0.0/8 or ::1."""
    host = host.decode(errors="replace") if isinstance(host, bytes) else host
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _inet(sock) -> bool:
    """Whether `sock` is an IPv4 or IPv6 socket (AF_UNIX and the rest never leave the machine this way)."""
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def _address(sock, address):
    """The address `sock` would reach, None when it reaches no host."""
    return address if _inet(sock) else None


# (owner, name): the destination a call reaches, from its arguments; None when it reaches no host.
DESTINATIONS = {
    (socket.socket, "connect"): lambda sock, address: _address(sock, address),
    (socket.socket, "connect_ex"): lambda sock, address: _address(sock, address),
    (socket.socket, "sendto"): lambda sock, *args: _address(sock, args[-1] if args else None),
    (socket.socket, "sendmsg"): lambda sock, buffers, ancdata=(), flags=0, address=None: _address(sock, address),
    (socket, "getaddrinfo"): lambda host, *args, **kwargs: host,
    (socket, "gethostbyname"): lambda host: host,
    (socket, "gethostbyname_ex"): lambda host: host,
    (socket, "gethostbyaddr"): lambda host: host,
    (socket, "getnameinfo"): lambda sockaddr, flags: sockaddr,
}


def _refuse(call: str, destination) -> NetworkBlocked:
    """Record an attempt in every active run's record; the error to raise for it."""
    for record in _active:
        record.attempts.append(Attempt(call, repr(destination), record.test))
    return NetworkBlocked(f"segcheck's tests block the network: {call} to {destination!r} was refused")


def _guarded(name: str, original, destination):
    """`original`, refusing a call whose destination is a host beyond loopback."""

    def guarded(*args, **kwargs):
        address = destination(*args, **kwargs)
        host = address[0] if isinstance(address, tuple) and address else address
        if address is not None and not is_loopback(host):
            raise _refuse(name, address)
        return original(*args, **kwargs)

    guarded.segcheck_blocked = True
    return guarded


def _block():
    """Replace the socket functions of DESTINATIONS by guarded ones."""
    for (owner, name), destination in DESTINATIONS.items():
        _originals[owner, name] = getattr(owner, name)
        setattr(owner, name, _guarded(name, _originals[owner, name], destination))


def _unblock():
    """Put the original socket functions back."""
    for (owner, name), original in _originals.items():
        setattr(owner, name, original)
    _originals.clear()


@contextmanager
def expect_blocked():
    """Take back the attempts made inside the block, which must make at least one; other errors pass through."""
    marks = [(record, len(record.attempts)) for record in _active]
    yield
    assert any(len(record.attempts) > mark for record, mark in marks), "no network attempt was made inside expect_blocked()"
    for record, mark in marks:
        del record.attempts[mark:]


def pytest_configure(config):
    """Give this run a record; the first run in the process puts the block in force (an inner run keeps it)."""
    record = Record(holds_block=not _originals)
    if record.holds_block:
        _block()
    config.stash[RECORD] = record
    _active.append(record)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    """Name `item` in the attempts made while it runs (setup, call and teardown)."""
    record = item.config.stash[RECORD]
    record.test = item.nodeid
    try:
        return (yield)
    finally:
        record.test = OUTSIDE


def pytest_sessionfinish(session):
    """A session that made an attempt fails, even if every test passed."""
    if session.config.stash[RECORD].attempts and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    """List the session's attempts in a red section "network attempts"."""
    attempts = config.stash[RECORD].attempts
    if attempts:
        terminalreporter.section("network attempts", red=True, bold=True)
        for attempt in attempts:
            terminalreporter.line(f"{attempt.test}: {attempt.call} to {attempt.destination}", red=True)
        terminalreporter.line(f"{len(attempts)} attempt(s) to reach the network beyond loopback: the run fails", red=True, bold=True)


def pytest_unconfigure(config):
    """Drop this run's record; the run that put the block in force lifts it."""
    record = config.stash.get(RECORD, None)
    if record is None:
        return
    _active.remove(record)
    if record.holds_block:
        _unblock()
