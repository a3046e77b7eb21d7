"""The state directory: small durable files, written atomically, readable by podctl only.

Nothing here is needed to know what runs (labels carry identity); the state directory
keeps history that Docker cannot: rollout revisions for `rollout history|undo`. A write
that fails (ENOSPC, EACCES, EROFS) keeps the previous file and raises StateWriteError,
which the caller reports as an event; podctl keeps running.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
import msgspec

from podctl.spec.model import ContainerTemplate
from podctl.storage.atomic import atomic_write
from podctl.storage.errors import StateReadError, StateWriteError, describe_oserror
from podctl.storage.paths import PRIVATE_FILE_MODE, ensure_private_dir

T = TypeVar("T")

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


# --- revision history -----------------------------------------------------------------

# Kubernetes keeps 10 old ReplicaSets (revisionHistoryLimit) by default.
REVISION_HISTORY_LIMIT = 10


class RevisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One revision of a pod template, as `rollout history` shows it and `undo` restores it.

    The template holds references (config/secret names) and the revision hash, never a
    secret value: digests only.
    """

    revision: str
    template: ContainerTemplate
    created_at: float
    cause: str = ""


class RevisionLog(msgspec.Struct, frozen=True, kw_only=True):
    stack: str
    pod: str
    revisions: tuple[RevisionRecord, ...] = ()


class RevisionHistory:
    """Per-pod list of revisions, oldest first, capped at `limit`.

    Re-recording an existing revision (an `undo`, or a revert of the file) moves it to the
    end, as `kubectl rollout undo` gives the restored ReplicaSet a new revision number.
    """

    def __init__(self, state: StateDir, limit: int = REVISION_HISTORY_LIMIT) -> None:
        if limit < 1:
            raise ValueError("revision history limit must be at least 1")
        self.state = state
        self.limit = limit

    @staticmethod
    def name(stack: str, pod: str) -> str:
        return f"revisions/{check_component(stack, 'stack')}/{check_component(pod, 'pod')}.json"

    def list(self, stack: str, pod: str) -> tuple[RevisionRecord, ...]:
        log = self.state.read_json(self.name(stack, pod), RevisionLog)
        return () if log is None else log.revisions

    def record(
        self,
        stack: str,
        pod: str,
        revision: str,
        template: ContainerTemplate,
        *,
        cause: str = "",
        now: float | None = None,
    ) -> tuple[RevisionRecord, ...]:
        """Append `revision` (moving it to the end if present); returns the new list."""
        current = self.list(stack, pod)
        if current and current[-1].revision == revision:
            return current
        entry = RevisionRecord(
            revision=revision,
            template=template,
            created_at=time.time() if now is None else now,
            cause=cause,
        )
        kept = (*tuple(r for r in current if r.revision != revision), entry)
        kept = kept[-self.limit :]
        self.state.write_json(
            self.name(stack, pod), RevisionLog(stack=stack, pod=pod, revisions=kept)
        )
        return kept

    def forget(self, stack: str, pod: str) -> None:
        self.state.remove(self.name(stack, pod))

    async def list_async(self, stack: str, pod: str) -> tuple[RevisionRecord, ...]:
        return await anyio.to_thread.run_sync(self.list, stack, pod)

    async def record_async(
        self,
        stack: str,
        pod: str,
        revision: str,
        template: ContainerTemplate,
        *,
        cause: str = "",
        now: float | None = None,
    ) -> tuple[RevisionRecord, ...]:
        def run() -> tuple[RevisionRecord, ...]:
            return self.record(stack, pod, revision, template, cause=cause, now=now)

        return await anyio.to_thread.run_sync(run)
