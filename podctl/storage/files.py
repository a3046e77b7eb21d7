"""Configs and secrets materialised as files for bind mounts.

Layout (all directories 0700, readable by podctl and dockerd, which runs as root):

    <runtime_dir>/stacks/<stack>/<configs|secrets>/<name>/<digest-hex>_<mode>[_u<uid>][_g<gid>]

The digest is in the file name so a content change yields a new path: Docker bind-mounts
a single file by inode, so rewriting a file in place would either be invisible to running
containers (rename swaps the inode) or change them under their feet. With a path per
digest, containers of the new revision mount the new file and old ones keep theirs until
they are rolled; `cleanup` removes what no container refers to any more.

Mode, uid and gid are part of the name too: two pods may mount one secret with different
owners. Files are written atomically with their final mode; chown happens only as root.
The runtime directory should be on tmpfs (see `paths.tmpfs_warning`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio.to_thread
import msgspec

from podctl.runtime.protocol import MountBinding
from podctl.spec.digest import content_digest, digest_matches, digest_token, short_digest
from podctl.storage.atomic import atomic_write
from podctl.storage.errors import (
    DigestMismatch,
    SourceError,
    StateWriteError,
    StorageError,
    describe_oserror,
)
from podctl.storage.paths import ensure_private_dir, stacks_dir, tmpfs_warning
from podctl.storage.statedir import check_component
from podctl.storage.volumes import bind_binding, tmpfs_binding, volume_binding

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from podctl.spec.model import DesiredConfig, DesiredSecret, DesiredStack, MountSpec

log = logging.getLogger("podctl.storage")

FileKind = Literal["config", "secret"]

# Docker swarm gives configs 0444; secrets default to 0400 as the kubelet's defaultMode
# for a single-user container (the contract).
DEFAULT_CONFIG_MODE = 0o444
DEFAULT_SECRET_MODE = 0o400

_SUBDIR: dict[FileKind, str] = {"config": "configs", "secret": "secrets"}
# Temp files of a crashed write are removed by cleanup once clearly abandoned.
_STALE_TEMP_S = 60.0


class MaterialisedFile(msgspec.Struct, frozen=True, kw_only=True):
    kind: FileKind
    name: str
    digest: str
    path: str  # absolute host path
    mode: int
    uid: int | None = None
    gid: int | None = None


class FileSet(msgspec.Struct, frozen=True, kw_only=True):
    """What `materialise` wrote for one stack. Holds paths and digests, never content."""

    stack: str
    files: tuple[MaterialisedFile, ...] = ()
    warnings: tuple[str, ...] = ()  # e.g. not on tmpfs, chown skipped: report as events

    @property
    def digests(self) -> frozenset[str]:
        return frozenset(f.digest for f in self.files)


def default_mode(kind: FileKind) -> int:
    return DEFAULT_SECRET_MODE if kind == "secret" else DEFAULT_CONFIG_MODE


# --- reading sources ------------------------------------------------------------------


def load_config(config: DesiredConfig) -> bytes:
    """The config's content (inline data or its file), checked against its digest. Blocking."""
    if config.data is not None:
        data = config.data
    elif config.file is not None:
        data = _read_source_file("config", config.name, config.file)
    else:
        raise SourceError(f"config {config.name!r} has neither data nor file")
    _verify("config", config.name, data, config.digest)
    return data


def load_secret(secret: DesiredSecret, environ: Mapping[str, str]) -> bytes:
    """The secret's value from its file or env var, checked against its digest. Blocking.

    The value goes only to the caller; errors name the secret and its source, not the value.
    """
    if secret.file is not None:
        data = _read_source_file("secret", secret.name, secret.file)
    elif secret.env is not None:
        value = environ.get(secret.env)
        if value is None:
            raise SourceError(
                f"secret {secret.name!r}: environment variable {secret.env} is not set"
            )
        # os.environ decodes undecodable bytes with surrogateescape; this restores them.
        data = value.encode("utf-8", "surrogateescape")
    else:
        raise SourceError(f"secret {secret.name!r} has neither file nor env")
    _verify("secret", secret.name, data, secret.digest)
    return data


async def read_config(config: DesiredConfig) -> bytes:
    """`load_config` in a worker thread (for env delivery)."""
    return await anyio.to_thread.run_sync(load_config, config)


async def read_secret(secret: DesiredSecret, environ: Mapping[str, str]) -> bytes:
    """`load_secret` in a worker thread (for env delivery)."""
    return await anyio.to_thread.run_sync(load_secret, secret, environ)


def _read_source_file(kind: str, name: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SourceError(f"{kind} {name!r}: source file {path} does not exist") from None
    except OSError as exc:
        raise SourceError(
            f"{kind} {name!r}: cannot read source file {path}: {describe_oserror(exc)}"
        ) from None


def _verify(kind: str, name: str, data: bytes, digest: str) -> None:
    ok = digest_matches(data, digest)
    if ok is None:
        # Not a digest we can recompute: the spec's contract is `sha256:<hex>`.
        log.debug("%s %r: digest %s is not a sha256 digest; not verified", kind, name, digest)
        return
    if not ok:
        raise DigestMismatch(kind, name, short_digest(digest), short_digest(content_digest(data)))


# --- the per-stack file tree ----------------------------------------------------------


class StackFiles:
    """Materialised configs and secrets of every stack, under `base` (one dir per stack).

    `base` defaults to `<runtime_dir>/stacks`. Per stack, callers serialise materialise
    and cleanup (the controller handles one stack at a time).
    """

    def __init__(self, base: Path | None = None) -> None:
        self._default_base = base is None
        self.base = stacks_dir() if base is None else Path(base)
        self._tmpfs_checked: str | None = None
        self._tmpfs_done = False

    def stack_root(self, stack: str) -> Path:
        return self.base / check_component(stack, "stack name")

    def file_path(
        self,
        stack: str,
        kind: FileKind,
        name: str,
        digest: str,
        mode: int,
        uid: int | None = None,
        gid: int | None = None,
    ) -> Path:
        """The host path of one materialised file (pure: same inputs, same path)."""
        leaf = f"{digest_token(digest)}_{mode:04o}"
        if uid is not None:
            leaf += f"_u{uid}"
        if gid is not None:
            leaf += f"_g{gid}"
        return self.stack_root(stack) / _SUBDIR[kind] / check_component(name, kind) / leaf

    def mount_path(self, stack: DesiredStack, mount: MountSpec) -> Path:
        """The host file a config or secret mount binds (pure)."""
        kind = _file_kind(mount)
        digest = _lookup(stack, kind, mount.source).digest
        mode = default_mode(kind) if mount.mode is None else mount.mode
        return self.file_path(stack.name, kind, mount.source, digest, mode, mount.uid, mount.gid)

    def binding(self, stack: DesiredStack, mount: MountSpec) -> MountBinding:
        """A read-only bind of the materialised file at the mount's target (pure)."""
        return MountBinding(
            type="bind",
            source=str(self.mount_path(stack, mount)),
            target=mount.target,
            read_only=True,
        )

    def mount_binding(self, stack: DesiredStack, mount: MountSpec) -> MountBinding:
        """The binding of any mount kind: volume, bind, tmpfs, config or secret (pure)."""
        if mount.kind == "volume":
            return volume_binding(stack.name, mount)
        if mount.kind == "bind":
            return bind_binding(mount)
        if mount.kind == "tmpfs":
            return tmpfs_binding(mount)
        return self.binding(stack, mount)

    async def materialise(self, stack: DesiredStack, environ: Mapping[str, str]) -> FileSet:
        """Write every config and secret that a pod of `stack` mounts; returns what exists.

        Raises SourceError (source missing), DigestMismatch (source changed since load:
        reload the stack) or StateWriteError (disk full, read-only, ...) before any pod
        depends on a half-written set; files already present are left as they are.
        """
        return await anyio.to_thread.run_sync(self._materialise, stack, dict(environ))

    async def cleanup(self, stack: str, keep_digests: Iterable[str]) -> list[Path]:
        """Remove files whose digest is not in `keep_digests`; returns the removed paths.

        `keep_digests` must include the digests mounted by every container still present
        (old revisions during a rollout): unlinking a bind-mounted file detaches it from
        the container that mounts it.
        """
        keep = frozenset(digest_token(d) for d in keep_digests)
        return await anyio.to_thread.run_sync(self._cleanup, stack, keep)

    async def remove_stack(self, stack: str) -> None:
        """Delete every file of `stack` (after its containers are gone)."""
        root = self.stack_root(stack)
        await anyio.to_thread.run_sync(_rmtree, root)

    # -- blocking parts, run in a worker thread --

    def _materialise(self, stack: DesiredStack, environ: Mapping[str, str]) -> FileSet:
        warnings: list[str] = []
        warning = self._check_tmpfs()
        if warning:
            warnings.append(warning)
        wanted: dict[Path, MaterialisedFile] = {}
        for pod in stack.pods:
            for mount in pod.template.mounts:
                if mount.kind not in _SUBDIR:
                    continue
                kind = _file_kind(mount)
                path = self.mount_path(stack, mount)
                if path not in wanted:
                    wanted[path] = MaterialisedFile(
                        kind=kind,
                        name=mount.source,
                        digest=_lookup(stack, kind, mount.source).digest,
                        path=str(path),
                        mode=default_mode(kind) if mount.mode is None else mount.mode,
                        uid=mount.uid,
                        gid=mount.gid,
                    )
        if not wanted:
            return FileSet(stack=stack.name, warnings=tuple(warnings))

        # Read every source first: a missing secret fails the stack before anything is
        # written, and each source is read once however many mounts use it.
        contents: dict[tuple[FileKind, str], bytes] = {}
        for f in wanted.values():
            key = (f.kind, f.name)
            if key not in contents:
                if f.kind == "config":
                    contents[key] = load_config(_lookup_config(stack, f.name))
                else:
                    contents[key] = load_secret(_lookup_secret(stack, f.name), environ)

        self._ensure_dirs(stack.name)
        is_root = os.geteuid() == 0
        for path, f in wanted.items():
            data = contents[(f.kind, f.name)]
            uid, gid = f.uid, f.gid
            if not is_root and (uid is not None or gid is not None):
                if (uid is not None and uid != os.geteuid()) or (
                    gid is not None and gid not in os.getgroups() and gid != os.getegid()
                ):
                    warnings.append(
                        f"{f.kind} {f.name!r}: podctl is not root, so {path.name} keeps "
                        f"podctl's owner instead of uid={uid} gid={gid}"
                    )
                uid = gid = None
            if _up_to_date(path, data, f.mode, uid, gid):
                continue
            try:
                ensure_private_dir(path.parent)
            except OSError as exc:
                raise StateWriteError(
                    f"cannot create directory {path.parent}: {describe_oserror(exc)}",
                    errno=exc.errno,
                ) from exc
            atomic_write(path, data, mode=f.mode, uid=uid, gid=gid, what=f"{f.kind} file")
        return FileSet(stack=stack.name, files=tuple(wanted.values()), warnings=tuple(warnings))

    def _ensure_dirs(self, stack: str) -> None:
        root = self.stack_root(stack)
        try:
            if self._default_base:
                ensure_private_dir(self.base.parent)  # the runtime dir itself
            ensure_private_dir(self.base)
            ensure_private_dir(root)
            for sub in _SUBDIR.values():
                ensure_private_dir(root / sub)
        except OSError as exc:
            raise StateWriteError(
                f"cannot create runtime directory {root}: {describe_oserror(exc)}",
                errno=exc.errno,
            ) from exc

    def _check_tmpfs(self) -> str | None:
        if not self._tmpfs_done:
            self._tmpfs_done = True
            self._tmpfs_checked = tmpfs_warning(self.base)
            if self._tmpfs_checked:
                log.warning("%s", self._tmpfs_checked)
        return self._tmpfs_checked

    def _cleanup(self, stack: str, keep: frozenset[str]) -> list[Path]:
        root = self.stack_root(stack)
        removed: list[Path] = []
        now = time.time()
        for sub in _SUBDIR.values():
            kind_dir = root / sub
            if not kind_dir.is_dir():
                continue
            for name_dir in kind_dir.iterdir():
                if not name_dir.is_dir() or name_dir.is_symlink():
                    continue
                for entry in name_dir.iterdir():
                    if entry.name.startswith("."):
                        # A temp file: only remove it once clearly abandoned by a crash.
                        with contextlib.suppress(OSError):
                            if now - entry.lstat().st_mtime > _STALE_TEMP_S:
                                entry.unlink()
                        continue
                    token = entry.name.split("_", 1)[0]
                    if token in keep:
                        continue
                    try:
                        entry.unlink()
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise StorageError(
                            f"cannot remove {entry}: {describe_oserror(exc)}"
                        ) from exc
                    removed.append(entry)
                with contextlib.suppress(OSError):
                    name_dir.rmdir()  # only succeeds when empty
        return removed


def _up_to_date(path: Path, data: bytes, mode: int, uid: int | None, gid: int | None) -> bool:
    """The file exists with this content, mode and owner (nothing to write)."""
    try:
        st = path.lstat()
        if (st.st_mode & 0o7777) != mode or not path.is_file() or path.is_symlink():
            return False
        if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
            return False
        if st.st_size != len(data):
            return False
        with open(path, "rb") as f:
            return f.read() == data
    except OSError:
        return False


def _rmtree(root: Path) -> None:
    try:
        shutil.rmtree(root)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot remove {root}: {describe_oserror(exc)}") from exc


def _file_kind(mount: MountSpec) -> FileKind:
    if mount.kind == "config":
        return "config"
    if mount.kind == "secret":
        return "secret"
    raise ValueError(f"expected a config or secret mount, got {mount.kind} mount")


def _lookup(stack: DesiredStack, kind: FileKind, name: str) -> DesiredConfig | DesiredSecret:
    return _lookup_config(stack, name) if kind == "config" else _lookup_secret(stack, name)


def _lookup_config(stack: DesiredStack, name: str) -> DesiredConfig:
    for c in stack.configs:
        if c.name == name:
            return c
    raise StorageError(f"stack {stack.name!r} has no config {name!r}")


def _lookup_secret(stack: DesiredStack, name: str) -> DesiredSecret:
    for s in stack.secrets:
        if s.name == name:
            return s
    raise StorageError(f"stack {stack.name!r} has no secret {name!r}")


class EnvironStackFiles:
    """The stack files as the reconciler uses them, bound to the environment that
    env-sourced secrets are read from (`podctl.reconcile.apply.StackFiles`).

    `environ` is kept by reference, not copied: the values of Kubernetes Secrets
    are added to it by each load (`podctl.bridge.inputs.load_stacks`), so a hot
    reload that changes a Secret is materialised with its new value. Each read
    takes a snapshot (`dict(...)`) before it leaves the event loop's thread.
    """

    def __init__(self, files: StackFiles, environ: Mapping[str, str]) -> None:
        self.files = files
        self.environ = environ

    async def materialise(self, stack: DesiredStack) -> None:
        result = await self.files.materialise(stack, self.environ)
        for warning in result.warnings:
            log.warning("%s", warning)

    def binding(self, stack: DesiredStack, mount: MountSpec) -> MountBinding:
        return self.files.binding(stack, mount)

    async def env_values(self, stack: DesiredStack, pod: str) -> dict[str, str]:
        """Values the pod receives as env, read in a worker thread (never logged)."""
        p = stack.pod(pod)
        if p is None or not p.template.env_from:
            return {}
        refs = p.template.env_from
        environ = dict(self.environ)

        def read() -> dict[str, str]:
            out = {}
            for ref in refs:
                if ref.kind == "secret":
                    sec = next(s for s in stack.secrets if s.name == ref.source)
                    out[ref.name] = load_secret(sec, environ).decode()
                else:
                    cfg = next(c for c in stack.configs if c.name == ref.source)
                    out[ref.name] = load_config(cfg).decode()
            return out

        return await anyio.to_thread.run_sync(read)
