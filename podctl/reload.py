"""Hot reload for `podctl run`: watch what the stacks reference, hand over stable edits.

What is watched is exactly what a load reads: the stack files, the `file:` of
configs and secrets, and build contexts (recursively, only those). A log file
written next to a stack file is none of these and triggers nothing. Each file
is watched through its parent directory (non-recursively) with events filtered
by path, because an editor's save often writes a new file and renames it over
the old one, which a watch on the old file itself would never see. The set is
worked out again after every successful load, since an edit can add a config.

An edit is handed over only once it is whole:

1. after the last change event, a quiet period (`quiet_s`) with none;
2. a fingerprint of every watched file, then a second one `recheck_s` later,
   which must be equal (a writer pausing between chunks is caught here);
3. the load itself (in a thread), then a third fingerprint, which must still
   be equal: what was loaded is what was fingerprinted.

Only then is the result handed over: `on_loaded` if the stacks differ from the
last ones handed over, `on_invalid` if the (stable) content does not load. A
content that was already handed over, valid or not, is not handed over again.
A writer that pauses for longer than the quiet period cannot be told from two
saves: its first half is treated as an edit of its own (usually invalid, so
reported and not applied).

    watcher = StackWatcher(paths, load, on_loaded, on_invalid, current=stacks)
    await tg.start(watcher.run)  # returns once watching
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from watchfiles._rust_notify import RustNotify

from podctl.spec.errors import SpecError
from podctl.spec.loader import STACK_FILE_NAMES
from podctl.stacksdir import PartialLoad, is_stack_file

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from podctl.spec.model import DesiredStack

log = logging.getLogger("podctl.reload")

QUIET_S = 0.2
RECHECK_S = 0.05
# The notify thread groups events for at most DEBOUNCE_MS and returns after
# STEP_MS without one; both well under QUIET_S, so a steady trickle of writes
# keeps pushing the quiet period back.
DEBOUNCE_MS = 100
STEP_MS = 20
# After a watch could not be set up (a directory vanished meanwhile), retry.
REWATCH_DELAY_S = 1.0

Fingerprint = tuple[tuple[str, object], ...]


def referenced_paths(stacks: Iterable[DesiredStack]) -> set[Path]:
    """What loading `stacks` read: stack files, config/secret files, build contexts (dirs)."""
    out: set[Path] = set()
    for stack in stacks:
        out.add(Path(stack.source))
        out.update(Path(c.file) for c in stack.configs if c.file)
        out.update(Path(s.file) for s in stack.secrets if s.file)
        out.update(Path(p.build.context) for p in stack.pods if p.build is not None)
    return out


class StackWatcher:
    """Watches the files stacks reference and hands over each stable, changed content.

    `paths` are the stack files (or directories) as given to `podctl run`;
    `load` loads them all (synchronous: it runs in a worker thread) and raises
    SpecError for bad content; `on_loaded` gets the new stacks; `on_invalid`
    gets the SpecError (it may be sync or async). `current` are the stacks
    already running: they are not handed over again, and what they reference
    is watched from the start. `referenced` says which files and directories a
    list of stacks depends on (default `referenced_paths`); directories are
    watched recursively.

    `stack_dirs` are stacks directories (`run --stacks-dir`): any stack file
    appearing in, changing in or leaving one of them is a change, whatever the
    stacks referenced before. `load` may then raise `PartialLoad` (some files
    bad): the bad files go to `on_invalid` and the good stacks to `on_loaded`.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        load: Callable[[], list[DesiredStack]],
        on_loaded: Callable[[list[DesiredStack]], Awaitable[None]],
        on_invalid: Callable[[SpecError], Awaitable[None] | None],
        *,
        current: Sequence[DesiredStack] = (),
        referenced: Callable[[Sequence[DesiredStack]], set[Path]] = referenced_paths,
        quiet_s: float = QUIET_S,
        recheck_s: float = RECHECK_S,
        stack_dirs: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.paths = [Path(os.path.abspath(p)) for p in paths]
        self.stack_dirs = tuple(os.path.abspath(d) for d in stack_dirs)
        self.load = load
        self.on_loaded = on_loaded
        self.on_invalid = on_invalid
        self.referenced = referenced
        self.quiet_s = quiet_s
        self.recheck_s = recheck_s
        self.stacks: list[DesiredStack] = list(current)
        # Counters, for tests and logs: calls of `load`, rounds of checking,
        # event paths that were (not) about a watched file.
        self.loads = 0
        self.rounds = 0
        self.seen = 0
        self.ignored = 0
        self._extra: set[Path] = referenced(self.stacks) if self.stacks else set()
        self._files: frozenset[str] = frozenset()  # watched files (abs paths)
        self._dirs: tuple[str, ...] = ()  # watched trees (abs paths)
        self._ancestors: frozenset[str] = frozenset()  # dirs leading to a watched path
        self._roots: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self._last_change = 0.0
        self._changed = anyio.Event()
        self._handed: Fingerprint | None = None  # content last handed over (or at start)
        self._watch_scopes: list[anyio.CancelScope] = []

    # -- what to watch -----------------------------------------------------------

    def _targets(self) -> tuple[set[str], set[str]]:
        """(files, directories) to watch now."""
        files: set[str] = set()
        dirs: set[str] = set()
        for p in self.paths:
            # A directory means the stack file inside it: any of the names may appear.
            names = [p / n for n in STACK_FILE_NAMES] if p.is_dir() else [p]
            files.update(str(n) for n in names)
        for p in self._extra:
            (dirs if p.is_dir() else files).add(os.path.abspath(p))
        # A symlinked file changes where its target lives: watch that too.
        files.update({os.path.realpath(f) for f in files} - files)
        dirs.update({os.path.realpath(d) for d in dirs} - dirs)
        return files, dirs

    def _update_targets(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Recompute what is watched; returns the roots (flat, recursive) to watch.

        Blocking (it looks at the file system): run in a thread.
        """
        files, dirs = self._targets()
        self._files = frozenset(files)
        self._dirs = tuple(sorted(dirs))
        ancestors: set[str] = set()
        flat: set[str] = set()
        # A stacks directory is watched flat, like the parent of a watched file.
        for f in [*files, *(os.path.join(d, ".") for d in self.stack_dirs)]:
            parent = os.path.dirname(f)
            # The nearest existing directory: when it gets the missing one, the
            # event is relevant (an ancestor) and the next round watches deeper.
            while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
                ancestors.add(parent)
                parent = os.path.dirname(parent)
            flat.add(parent)
        for d in dirs:
            ancestors.add(d)
        self._ancestors = frozenset(ancestors)
        return tuple(sorted(flat)), tuple(d for d in self._dirs if os.path.isdir(d))

    def _relevant(self, path: str) -> bool:
        if path in self._files or path in self._ancestors:
            return True
        if self.stack_dirs and (
            path in self.stack_dirs
            or (os.path.dirname(path) in self.stack_dirs and is_stack_file(path))
        ):
            return True
        return any(path.startswith(d + os.sep) for d in self._dirs)

    @property
    def pending(self) -> bool:
        """A relevant change is waiting for a round of checking."""
        return self._changed.is_set()

    def _note(self, paths: Iterable[str]) -> None:
        relevant = False
        for p in paths:
            if self._relevant(p):
                self.seen += 1
                relevant = True
            else:
                self.ignored += 1
        if relevant:
            self._last_change = anyio.current_time()
            self._changed.set()

    # -- fingerprints --------------------------------------------------------------

    def _fingerprint(self) -> Fingerprint:
        """Content hash of each watched file; (name, size, mtime) of each file in a tree.

        Blocking: run in a thread.
        """
        out: list[tuple[str, object]] = []
        listed: list[str] = []
        for d in self.stack_dirs:
            # Which stack files there are, not only what the known ones hold: a file
            # added to the directory is a change.
            try:
                names = sorted(n for n in os.listdir(d) if is_stack_file(n))
            except OSError as exc:
                out.append((d, f"unreadable: {exc.errno}"))
                continue
            out.append((d, tuple(names)))
            listed.extend(os.path.join(d, n) for n in names)
        for f in sorted(self._files.union(listed)):
            try:
                with open(f, "rb") as fh:
                    out.append((f, hashlib.file_digest(fh, "sha256").hexdigest()))
            except OSError as exc:
                out.append((f, f"unreadable: {exc.errno}"))
        for d in self._dirs:
            for root, subdirs, names in os.walk(d):
                subdirs.sort()
                for name in sorted(names):
                    full = os.path.join(root, name)
                    try:
                        st = os.lstat(full)
                    except OSError:
                        continue
                    out.append((full, (st.st_size, st.st_mtime_ns, st.st_ino)))
        return tuple(out)

    # -- the run -------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch until cancelled; `started` once watching.

        The content found at start counts as handed over (it is what `current`
        was loaded from, or near enough): an edit made between that load and
        `started` is handed over with the next change to any watched file.
        """
        async with anyio.create_task_group() as tg:
            await self._rewatch(tg)
            self._handed = await anyio.to_thread.run_sync(self._fingerprint)
            task_status.started()
            while True:
                await self._changed.wait()
                await self._settle()
                await self._check()
                self.rounds += 1
                await self._rewatch(tg)

    async def _settle(self) -> None:
        """Return once no relevant event came for `quiet_s`."""
        while True:
            remaining = self._last_change + self.quiet_s - anyio.current_time()
            if remaining <= 0:
                return
            await anyio.sleep(remaining)

    async def _check(self) -> None:
        """One round: hand over the content if it is stable and new."""
        self._changed = anyio.Event()
        stamp = self._last_change
        first = await anyio.to_thread.run_sync(self._fingerprint)
        await anyio.sleep(self.recheck_s)
        second = await anyio.to_thread.run_sync(self._fingerprint)
        if second != first or self._last_change != stamp:
            self._again()
            return
        if second == self._handed:
            return
        self.loads += 1
        error: SpecError | None = None
        stacks: list[DesiredStack] = []
        try:
            stacks = await anyio.to_thread.run_sync(self.load)
        except PartialLoad as exc:
            error, stacks = exc, exc.stacks
        except SpecError as exc:
            error = exc
        except Exception:
            # A bug in loading must not take the running stacks down with it.
            log.exception("reloading the stack files failed; keeping the running stacks")
            self._handed = second
            return
        third = await anyio.to_thread.run_sync(self._fingerprint)
        if third != second:
            # Changed while loading: what was loaded may be half of it.
            self._again()
            return
        self._handed = second
        if error is not None:
            result = self.on_invalid(error)
            if result is not None:
                await result
            if not isinstance(error, PartialLoad):
                return
        if stacks != self.stacks:
            self.stacks = stacks
            await self.on_loaded(stacks)
        files, dirs = self._files, self._dirs
        self._extra = self.referenced(stacks)
        await anyio.to_thread.run_sync(self._update_targets)
        if (self._files, self._dirs) != (files, dirs):
            # Newly referenced files were read by this load but not watched
            # while it ran: once they are (run() rewatches next), one more
            # round fingerprints them and loads again if they changed meanwhile.
            self._again()

    def _again(self) -> None:
        """Treat an unstable read as a change: settle and look again."""
        self._last_change = max(self._last_change, anyio.current_time())
        self._changed.set()

    # -- notify threads --------------------------------------------------------------

    async def _rewatch(self, tg: anyio.abc.TaskGroup) -> None:
        """(Re)start the notify watches if the roots changed; old ones stop after."""
        roots = await anyio.to_thread.run_sync(self._update_targets)
        if roots == self._roots and self._watch_scopes:
            return
        scopes: list[anyio.CancelScope] = []
        try:
            for recursive, group in ((False, roots[0]), (True, roots[1])):
                if group:
                    scopes.append(anyio.CancelScope())
                    await tg.start(self._notify, group, recursive, scopes[-1])
        except OSError as exc:
            # A directory vanished between listing and watching, or inotify is
            # out of watches: keep the old watch and try again a little later.
            for scope in scopes:
                scope.cancel()
            log.warning("cannot watch %s: %s; retrying", ", ".join(roots[0] + roots[1]), exc)
            self._last_change = anyio.current_time() + REWATCH_DELAY_S
            self._changed.set()
            return
        for scope in self._watch_scopes:
            scope.cancel()
        self._watch_scopes = scopes
        self._roots = roots

    async def _notify(
        self,
        roots: tuple[str, ...],
        recursive: bool,
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        notify = await open_notify(roots, recursive)
        await notify_paths(notify, scope, self._note, DEBOUNCE_MS, STEP_MS, task_status=task_status)


async def open_notify(roots: Sequence[str], recursive: bool) -> RustNotify:
    """A watch on `roots` (watchfiles' RustNotify), watching from now on: a write
    made after this returns is seen. OSError: a root vanished, or inotify is out of
    watches."""
    return await anyio.to_thread.run_sync(
        lambda: RustNotify(list(roots), False, False, 50, recursive, True)
    )


async def notify_paths(
    notify: RustNotify,
    scope: anyio.CancelScope,
    on_paths: Callable[[Iterable[str]], None],
    debounce_ms: int,
    step_ms: int,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Hand every group of changed paths `notify` sees to `on_paths` until `scope`
    is cancelled, then close it. `watch` blocks a worker thread until events,
    groups them for at most `debounce_ms`, and checks `stop` every `step_ms`,
    which is how a cancellation reaches the thread."""
    stop = threading.Event()
    try:
        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_set_when_cancelled, stop)
                task_status.started()
                while not stop.is_set():
                    raw = await anyio.to_thread.run_sync(
                        notify.watch, debounce_ms, step_ms, 0, stop
                    )
                    if isinstance(raw, set) and raw:
                        on_paths(path for _, path in raw)
                tg.cancel_scope.cancel()
    finally:
        notify.close()


async def _set_when_cancelled(stop: threading.Event) -> None:
    """Wake the notify thread when the task is cancelled (its `watch` checks `stop`)."""
    try:
        await anyio.sleep_forever()
    finally:
        stop.set()


async def watch_stacks(
    paths: Sequence[str | os.PathLike[str]],
    load: Callable[[], list[DesiredStack]],
    on_loaded: Callable[[list[DesiredStack]], Awaitable[None]],
    on_invalid: Callable[[SpecError], Awaitable[None] | None],
    *,
    current: Sequence[DesiredStack] = (),
    quiet_s: float = QUIET_S,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """`StackWatcher(...).run()` in one call; see StackWatcher."""
    watcher = StackWatcher(paths, load, on_loaded, on_invalid, current=current, quiet_s=quiet_s)
    await watcher.run(task_status=task_status)


__all__ = ["StackWatcher", "referenced_paths", "watch_stacks"]
