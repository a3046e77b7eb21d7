"""Engine errors that say what podctl was doing and what to try."""

from __future__ import annotations


class EngineError(Exception):
    """An engine call failed. `doing` says what podctl was doing; `hint` what to try."""

    def __init__(self, doing: str, detail: str, hint: str = "") -> None:
        self.doing = doing
        self.detail = detail
        self.hint = hint
        msg = f"{doing}: {detail}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class EngineUnavailable(EngineError):
    """The engine did not answer in time, or its socket is gone."""


class NotFound(EngineError):
    """The object (container, network, volume, image) does not exist."""


class Conflict(EngineError):
    """The object already exists, or is in use (a name taken, a port bound, a volume mounted)."""


class ImagePullError(EngineError):
    """The image is not local and could not be pulled."""


class ExecTimeout(EngineError, TimeoutError):
    """A command run with `exec` did not finish within its timeout.

    It is a `TimeoutError` too, so probe code can treat it like any other timeout.
    The engine cannot kill an exec'd process: it may still be running in the container.
    """


class BuildError(EngineError):
    """An image build failed. `lines` are the last lines of the build's output."""

    def __init__(self, doing: str, detail: str, lines: list[str]) -> None:
        super().__init__(doing, detail)
        self.lines = lines
