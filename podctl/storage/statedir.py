"""The state directory: small durable files, written atomically, readable by podctl only.

Nothing here is needed to know what runs (labels carry identity); the state directory
keeps what Docker cannot: restart counts, and rollout revisions (`storage.history`). A write
that fails (ENOSPC, EACCES, EROFS) keeps the previous file and raises StateWriteError,
which the caller reports as an event; podctl keeps running.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio.to_thread
import msgspec

from podctl.storage.atomic import atomic_write
from podctl.storage.errors import StateReadError, StateWriteError, describe_oserror
from podctl.storage.paths import PRIVATE_FILE_MODE, ensure_private_dir

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

log = logging.getLogger("podctl.storage")

# One path component: no separators, no leading dot (temp files start with a dot), no "..".
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")

_encoder = msgspec.json.Encoder(order="deterministic")


def check_component(part: str, what: str = "name") -> str:
    """Return `part` when it is a safe single path component, else raise ValueError."""
    if not _COMPONENT.match(part) or part in (".", ".."):
        raise ValueError(f"invalid {what} {part!r}: use letters, digits and _ . @ + -")
    return part


class StateDir:
    """A directory of podctl state. Names are relative paths like `revisions/shop/web.json`.

    Methods are blocking; use the `*_async` variants on the event loop.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of state file `name` (validated: it cannot leave the directory)."""
        parts = name.split("/")
        for part in parts:
            check_component(part, "state file name")
        return self.path.joinpath(*parts)

    def ensure(self) -> Path:
        try:
            return ensure_private_dir(self.path)
        except OSError as exc:
            raise StateWriteError(
                f"cannot create state directory {self.path}: {describe_oserror(exc)}",
                errno=exc.errno,
            ) from exc

    def write_bytes(self, name: str, data: bytes) -> Path:
        target = self.file(name)
        self.ensure()
        try:
            for parent in reversed(target.relative_to(self.path).parents[:-1]):
                ensure_private_dir(self.path / parent)
        except OSError as exc:
            raise StateWriteError(
                f"cannot create directory for state file {target}: {describe_oserror(exc)}",
                errno=exc.errno,
            ) from exc
        atomic_write(target, data, mode=PRIVATE_FILE_MODE, what="state file")
        return target

    def write_json(self, name: str, obj: object) -> Path:
        """Encode `obj` (msgspec-encodable) as JSON and replace `name` atomically."""
        return self.write_bytes(name, _encoder.encode(obj))

    def read_bytes(self, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        target = self.file(name)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateReadError(
                f"cannot read state file {target}: {describe_oserror(exc)}"
            ) from exc

    def read_json(self, name: str, type: type[T]) -> T | None:
        """Decode `name` as `type`; None when missing; StateReadError when corrupt."""
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=type)
        except msgspec.DecodeError as exc:
            # msgspec's messages name the position and expected type, not the content.
            raise StateReadError(f"state file {self.file(name)} is invalid: {exc}") from exc

    def remove(self, name: str) -> bool:
        """Delete `name`; False when it did not exist."""
        target = self.file(name)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StateWriteError(
                f"cannot remove state file {target}: {describe_oserror(exc)}", errno=exc.errno
            ) from exc
        return True

    async def write_json_async(self, name: str, obj: object) -> Path:
        return await anyio.to_thread.run_sync(self.write_json, name, obj)

    async def read_json_async(self, name: str, type: type[T]) -> T | None:
        return await anyio.to_thread.run_sync(self.read_json, name, type)

    async def remove_async(self, name: str) -> bool:
        return await anyio.to_thread.run_sync(self.remove, name)


class StateFile(Generic[T]):
    """One JSON file of the state directory that podctl can live without (restart
    counts, say): an unreadable file reads as `default()`, a failed write is
    reported and never raised. The engine holds the truth; this only saves history."""

    def __init__(self, state: StateDir, name: str, type: type[T], default: Callable[[], T]) -> None:
        self.state = state
        self.name = name
        self.type = type
        self.default = default

    def load(self) -> T:
        try:
            found = self.state.read_json(self.name, self.type)
        except Exception as exc:  # corrupt or unreadable: start afresh, say so
            log.warning("ignoring unreadable %s: %s", self.name, exc)
            return self.default()
        return self.default() if found is None else found

    async def save(self, obj: T) -> None:
        try:
            await self.state.write_json_async(self.name, obj)
        except Exception as exc:
            log.warning("could not save %s: %s", self.name, exc)
