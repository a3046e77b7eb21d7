"""From changed paths to one batch: what to send, delete, restart, run or rebuild.

Events only say "look here" (level-triggered, like the controller): every path
is looked at again when the batch is made, so the order and number of events an
editor produces do not matter, only what is on disk now.

Each synced file's content hash (with its exec bit) is kept per rule once a batch
carrying it has been applied. A save that leaves the content as it was sends
nothing, and a batch with nothing to do emits nothing. Deleting is only ever
asked for paths seen on disk (at start or since), so an editor's short-lived
temporary file never costs an exec in the containers.

Blocking (reads files): the session runs `PodWatch.batch` in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from podctl.dev.patterns import PathFilter, read_ignore_file
from podctl.spec.paths import is_within

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from podctl.spec.model import DesiredPod, WatchExecSpec, WatchRuleSpec

# Over this many changed files in one batch (a branch switch), podctl stops
# diffing file by file: it rebuilds when the pod has `build:`, else resyncs all.
MAX_BATCH_FILES = 1000


@dataclass(frozen=True)
class FileUpdate:
    """One file (or symlink) to write into the containers."""

    target: str  # absolute path in the container
    data: bytes
    mode: int  # permission bits
    link: str | None = None  # a symlink's target (then `data` is empty)


@dataclass
class Batch:
    """What one batch of changes asks of a pod's replicas."""

    puts: list[FileUpdate] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # absolute container paths
    rebuild: bool = False
    restart: bool = False
    execs: list[WatchExecSpec] = field(default_factory=list)
    changed: int = 0  # files looked at (before hashing)
    fallback: str | None = None  # why the batch is not a file-by-file sync
    notices: list[str] = field(default_factory=list)  # say-once messages (bind mounts)
    # (rule index, rel) -> hash after this batch (None: deleted); applied by commit().
    hashes: dict[tuple[int, str], str | None] = field(default_factory=dict)

    @property
    def syncs(self) -> bool:
        return bool(self.puts or self.deletes)

    @property
    def empty(self) -> bool:
        return not (self.syncs or self.rebuild or self.restart or self.execs)


@dataclass
class _Rule:
    spec: WatchRuleSpec
    filter: PathFilter
    is_dir: bool
    skip: tuple[str, ...]  # host paths under the rule that are bind-mounted into the pod
    skip_note: str | None
    known: dict[str, str] = field(default_factory=dict)  # rel -> hash last sent
    present: set[str] = field(default_factory=set)  # rels seen on disk


def content_hash(path: str) -> tuple[str, bytes, int, str | None] | None:
    """(hash, data, mode, link target) of a regular file or symlink; None when it is
    neither (gone, a directory, a device)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            link = os.readlink(path)
            return hashlib.sha256(b"L" + link.encode()).hexdigest(), b"", 0o777, link
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    h = hashlib.sha256(b"X" if mode & 0o111 else b"F")
    h.update(data)
    return h.hexdigest(), data, mode, None


class PodWatch:
    """The watch rules of one pod and what has been synced under them."""

    def __init__(self, pod: DesiredPod) -> None:
        self.pod = pod
        self.rules: list[_Rule] = []
        develop = pod.develop
        binds = [m for m in pod.template.mounts if m.kind == "bind"]
        for spec in develop.watch if develop is not None else ():
            is_dir = os.path.isdir(spec.path)
            ignore = list(spec.ignore)
            if is_dir:
                # As Compose: the watch path's own .dockerignore applies too.
                ignore = read_ignore_file(os.path.join(spec.path, ".dockerignore")) + ignore
            skip: list[str] = []
            notes: list[str] = []
            if spec.target is not None:
                for m in binds:
                    if is_within(m.source, spec.path) or is_within(spec.path, m.source):
                        skip.append(spec.path if is_within(m.source, spec.path) else m.source)
                        notes.append(f"{m.source} is bind-mounted at {m.target}")
            note = None
            if notes:
                note = (
                    f"{pod.name}: not syncing {', '.join(skip)} to {spec.target}: "
                    f"{'; '.join(notes)}, so the containers see its files already"
                )
            self.rules.append(
                _Rule(spec, PathFilter(ignore, spec.include), is_dir, tuple(skip), note)
            )
        self._noted: set[int] = set()

    @property
    def has_build(self) -> bool:
        return self.pod.build is not None

    # -- looking at the tree -------------------------------------------------------

    def _rel(self, rule: _Rule, path: str) -> str | None:
        """`path` relative to the rule's path (`/`-separated), or None when outside it."""
        root = rule.spec.path
        if path == root:
            return "" if rule.is_dir else posixpath.basename(root)
        if not rule.is_dir or not path.startswith(root.rstrip(os.sep) + os.sep):
            return None
        return os.path.relpath(path, root).replace(os.sep, "/")

    def _target(self, rule: _Rule, rel: str) -> str:
        assert rule.spec.target is not None
        if not rule.is_dir:
            return rule.spec.target
        return posixpath.join(rule.spec.target, rel) if rel else rule.spec.target

    def _host(self, rule: _Rule, rel: str) -> str:
        return os.path.join(rule.spec.path, rel) if rule.is_dir else rule.spec.path

    def _skipped(self, rule: _Rule, host: str) -> bool:
        return any(is_within(s, host) for s in rule.skip)

    def _walk(self, rule: _Rule, rel: str) -> Iterator[str]:
        """Wanted files (rels) at and below `rel` as they are on disk now."""
        top = self._host(rule, rel)
        if not os.path.isdir(top) or os.path.islink(top):
            if rule.filter.wanted(rel) or not rule.is_dir:
                yield rel
            return
        for root, dirs, files in os.walk(top):
            base = os.path.relpath(root, rule.spec.path).replace(os.sep, "/")
            base = "" if base == "." else base
            dirs[:] = sorted(d for d in dirs if rule.filter.wanted_dir(posixpath.join(base, d)))
            for name in sorted(files):
                child = posixpath.join(base, name)
                if rule.filter.wanted(child):
                    yield child
            # Symlinks to directories are files to sync, not trees to follow.
            for d in list(dirs):
                if os.path.islink(os.path.join(root, d)):
                    dirs.remove(d)
                    child = posixpath.join(base, d)
                    if rule.filter.wanted(child):
                        yield child

    def scan(self) -> None:
        """Note what is on disk now (blocking): deletions are asked only for these."""
        for rule in self.rules:
            if rule.spec.syncs and os.path.exists(rule.spec.path):
                rule.present = set(self._walk(rule, ""))

    # -- one batch -----------------------------------------------------------------

    def batch(self, paths: Iterable[str]) -> Batch:
        """The batch `paths` (absolute host paths that changed) make now. Blocking."""
        out = Batch()
        candidates: dict[tuple[int, str], None] = {}
        for path in sorted(set(paths)):
            for i, rule in enumerate(self.rules):
                rel = self._rel(rule, path)
                if rel is None:
                    continue
                if rel and rule.is_dir and not rule.filter.wanted(rel):
                    continue
                if not rule.spec.syncs:
                    if rule.spec.action == "rebuild":
                        out.rebuild = True
                    else:
                        out.restart = True
                    continue
                if self._skipped(rule, path):
                    if rule.skip_note and i not in self._noted:
                        self._noted.add(i)
                        out.notices.append(rule.skip_note)
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    # A directory that appeared (moved in, unpacked): its files.
                    for child in self._walk(rule, rel):
                        candidates[(i, child)] = None
                else:
                    candidates[(i, rel)] = None
                    # A directory that went away takes what was seen under it along.
                    prefix = rel + "/"
                    for seen in [p for p in rule.present if p.startswith(prefix)]:
                        candidates[(i, seen)] = None
        out.changed = len(candidates)
        if out.changed > MAX_BATCH_FILES:
            if self.has_build:
                out.fallback = (
                    f"{out.changed} files changed at once (over {MAX_BATCH_FILES}): "
                    f"rebuilding {self.pod.name} instead of syncing file by file"
                )
                out.rebuild = True
                return out
            out.fallback = (
                f"{out.changed} files changed at once (over {MAX_BATCH_FILES}): "
                f"resyncing all of {self.pod.name}'s watch paths"
            )
            candidates = dict.fromkeys(self._everything())
        self._diff(out, candidates)
        return out

    def full(self, *, initial_only: bool = False) -> Batch:
        """Every wanted file of every sync rule (with `initial_only`, of the rules with
        `initial_sync`), as if all had changed."""
        out = Batch()
        keys = [
            (i, rel)
            for i, rel in self._everything()
            if not initial_only or self.rules[i].spec.initial_sync
        ]
        out.changed = len(keys)
        self._diff(out, dict.fromkeys(keys))
        return out

    def _everything(self) -> Iterator[tuple[int, str]]:
        for i, rule in enumerate(self.rules):
            if not rule.spec.syncs:
                continue
            if self._skipped(rule, rule.spec.path):
                continue
            on_disk = set(self._walk(rule, "")) if os.path.exists(rule.spec.path) else set()
            for rel in sorted(on_disk | rule.present):
                yield i, rel

    def _diff(self, out: Batch, candidates: dict[tuple[int, str], None]) -> None:
        touched: set[int] = set()
        for i, rel in candidates:
            rule = self.rules[i]
            host = self._host(rule, rel)
            if self._skipped(rule, host):
                continue
            found = content_hash(host)
            if found is None:
                if os.path.isdir(host):
                    continue  # a directory's files come as candidates of their own
                if rel not in rule.present:
                    continue  # never seen: nothing in the containers came from it
                out.deletes.append(self._target(rule, rel))
                out.hashes[(i, rel)] = None
                touched.add(i)
                continue
            digest, data, mode, link = found
            if rule.known.get(rel) == digest:
                continue  # an identical save: nothing to send
            out.puts.append(FileUpdate(self._target(rule, rel), data, mode, link))
            out.hashes[(i, rel)] = digest
            touched.add(i)
        for i in sorted(touched):
            spec = self.rules[i].spec
            if spec.action == "sync+restart":
                out.restart = True
            elif spec.action == "sync+exec" and spec.exec is not None:
                out.execs.append(spec.exec)

    def seed_from_image(self, index: int, archive: bytes) -> int:
        """Record what the image holds at rule `index`'s target (a tar from the engine,
        members named from the target's base name down) as already sent, so the
        initial sync sends only what differs. Returns the files recorded."""
        rule = self.rules[index]
        seeded = 0
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
            for member in tar:
                if rule.is_dir:
                    _, _, rel = member.name.partition("/")
                else:
                    rel = posixpath.basename(rule.spec.path)
                if not rel:
                    continue
                if member.issym():
                    digest = hashlib.sha256(b"L" + member.linkname.encode()).hexdigest()
                elif member.isfile():
                    f = tar.extractfile(member)
                    h = hashlib.sha256(b"X" if member.mode & 0o111 else b"F")
                    h.update(f.read() if f is not None else b"")
                    digest = h.hexdigest()
                else:
                    continue
                rule.known[rel] = digest
                seeded += 1
        return seeded

    def commit(self, batch: Batch, *, deleted: bool = True) -> None:
        """Record what `batch` synced (after it was applied), so an identical save of
        the same content later sends nothing. With `deleted=False` (the deletions
        could not be applied), deleted files stay as they were recorded."""
        for (i, rel), digest in batch.hashes.items():
            rule = self.rules[i]
            if digest is None:
                if not deleted:
                    continue
                rule.known.pop(rel, None)
                rule.present.discard(rel)
            else:
                rule.known[rel] = digest
                rule.present.add(rel)

    def forget(self) -> None:
        """After a rebuild the containers hold the image's files: nothing is known sent."""
        for rule in self.rules:
            rule.known.clear()

    def synced(self) -> list[FileUpdate]:
        """Everything synced so far, as it is now on disk (for a replica that joined late)."""
        out: list[FileUpdate] = []
        for rule in self.rules:
            for rel in sorted(rule.known):
                found = content_hash(self._host(rule, rel))
                if found is not None:
                    _, data, mode, link = found
                    out.append(FileUpdate(self._target(rule, rel), data, mode, link))
        return out
