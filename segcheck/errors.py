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


class RefusedRanges(SegcheckError):
    """MXNet refuses a quantized graph because of some layers' calibrated ranges; `layers` names them by dotted Gluon
    path (what int8.exclude takes), so that tune can keep them in FP32 first."""

    def __init__(self, message: str, layers: tuple = ()):
        super().__init__(message, tuple(layers))  # both in args: the error is pickled back from a forked child
        self.layers = tuple(layers)

    def __str__(self) -> str:
        return self.args[0]
