"""Error types: every message names the file, key or value at fault and what to do about it."""


class SegcheckError(Exception):
    """A problem the user can fix; its message is one line, ready to print."""


class MissingResource(SegcheckError):
    """Weights or data that are not on this machine: tests skip on it (or fail with --require-real)."""


class BadSample(SegcheckError):
    """One unreadable or inconsistent dataset sample; --skip-bad turns it into a warning."""


class BadSampleWarning(UserWarning):
    """A sample left out under --skip-bad. (Here, not beside the loaders: a warning filter naming it imports its
    module, and must not load MXNet before segcheck gives it its threads.)"""
