"""A pytest plugin that blocks every network connection except to loopback, for a whole test session.

Registered by pyproject.toml (-p nonetwork): the default run proves that the gate and its tests never touch
the network; `segcheck fetch` is tested against servers its tests start on 127.0.0.1.
"""

import socket

import pytest

LOOPBACK = ("localhost", "127.0.0.1", "::1", "")
PATCHED = pytest.StashKey[dict]()


class NetworkBlocked(ConnectionRefusedError):
    """Raised instead of any connection to a host other than loopback."""


def _allowed(host) -> bool:
    return isinstance(host, str) and (host in LOOPBACK or host.startswith("127."))


def _blocked(host):
    return NetworkBlocked(f"segcheck's tests block the network: a connection to {host!r} was attempted")


def pytest_configure(config):
    if getattr(socket.socket.connect, "segcheck_blocked", False):
        return  # an inner pytest run in this process: the outer run's block stays in force
    originals = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex, "getaddrinfo": socket.getaddrinfo}

    def connect(sock, address, *rest):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _allowed(address[0]):
            raise _blocked(address[0])
        return originals["connect"](sock, address, *rest)

    def connect_ex(sock, address, *rest):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _allowed(address[0]):
            raise _blocked(address[0])
        return originals["connect_ex"](sock, address, *rest)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _allowed(host if isinstance(host, str) else host.decode()):
            raise socket.gaierror(socket.EAI_NONAME, str(_blocked(host)))
        return originals["getaddrinfo"](host, *args, **kwargs)

    connect.segcheck_blocked = True
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    config.stash[PATCHED] = originals


def pytest_unconfigure(config):
    originals = config.stash.get(PATCHED, None)
    if originals:
        socket.socket.connect, socket.socket.connect_ex = originals["connect"], originals["connect_ex"]
        socket.getaddrinfo = originals["getaddrinfo"]
