"""`StackFile` -> `DesiredStack`: defaults applied, units parsed, references checked.

Everything the planner should not have to think about happens here: durations
become seconds, sizes bytes, named ports numbers, relative paths absolute and
contained, and each pod gets a `revision` (the template hash in the
`io.podctl.revision` label). Problems are collected as `FieldError`s with the
field path; the loader turns them into `FILE:LINE:COL` issues.

Secret values are read here only to hash them; the value itself is never kept
in a Struct or put in a message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import posixpath
import re
import shlex
import stat
from typing import TYPE_CHECKING, Literal, TypeVar

import msgspec

from podctl import defaults, labels
from podctl.spec import limits, model, schema
from podctl.spec.digest import source_digest
from podctl.spec.errors import FieldError, FieldPath
from podctl.spec.paths import PathEscape, resolve_in_stack
from podctl.spec.units import parse_cpus, parse_duration, parse_mode, parse_size

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

# RFC 1123 label: stack, pod and service names become DNS names and Docker object names.
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Volumes, configs and secrets: Docker volume names and file names under /run/secrets.
_OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PORT_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
_ENV_NAME = re.compile(r"[^=\0]+")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PERCENT = re.compile(r"(\d{1,3})%")

SECRETS_DIR = "/run/secrets"
SECRET_MODE = 0o400
CONFIG_MODE = 0o444
# Docker refuses memory limits below 6 MiB (linuxMinMemory in the daemon).
MIN_MEMORY_BYTES = 6 * 1024 * 1024
REVISION_LEN = 12  # hex digits of a pod revision (the io.podctl.revision label)

T = TypeVar("T")


def context_digest(directory: str) -> str:
    """sha256 over a build context's relative file names, exec bits and contents.

    Walked in sorted order without following symlinks (a link hashes as its
    target text), so the same tree gives the same digest on every run.
    """
    h = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            st = os.lstat(full)
            h.update(rel.encode() + b"\0")
            if stat.S_ISLNK(st.st_mode):
                h.update(b"L" + os.readlink(full).encode() + b"\0")
                continue
            h.update(b"X" if st.st_mode & 0o111 else b"F")
            h.update(str(st.st_size).encode() + b"\0")
            with open(full, "rb") as f:
                while chunk := f.read(1 << 16):
                    h.update(chunk)
    return h.hexdigest()


def pod_revision(template: model.ContainerTemplate, digests: Iterable[str]) -> str:
    """The template hash: what forces a new container, and nothing else.

    Replicas, depends_on, rollout and restart are deliberately outside the
    template (Compose's hash.go clears scale and depends_on the same way), so
    scaling or editing them never recreates a container. Config/secret/build
    digests are mixed in so content changes roll the pods that use them.
    """
    h = hashlib.sha256(msgspec.json.encode(template, order="deterministic"))
    for digest in sorted(digests):
        h.update(b"\0" + digest.encode())
    return h.hexdigest()[:REVISION_LEN]


def unprivileged_port_start() -> int:
    """Lowest host port a non-root process may bind (0 when running as root)."""
    if os.geteuid() == 0:
        return 0
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1024


class _Context:
    """What normalising one stack needs, plus the errors found so far."""

    def __init__(
        self,
        stack: schema.StackFile,
        source: str,
        environ: Mapping[str, str],
        port_start: int,
        max_replicas: int = limits.DEFAULT_MAX_REPLICAS,
    ) -> None:
        self.stack = stack
        self.max_replicas = max_replicas
        self.source = source
        self.stack_dir = os.path.dirname(source)
        self.environ = environ
        self.port_start = port_start
        self.errors: list[FieldError] = []

    def error(self, path: FieldPath, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def parse(self, path: FieldPath, parser: Callable[[T], float], value: T) -> float | None:
        try:
            return parser(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def duration(
        self, path: FieldPath, value: schema.Duration | None, default: float, *, positive: bool
    ) -> float:
        if value is None:
            return default
        seconds = self.parse(path, parse_duration, value)
        if seconds is None:
            return default
        if positive and seconds <= 0:
            self.error(path, "must be greater than 0")
        return seconds

    def contained(self, path: FieldPath, value: str, what: str, *, host_ok: bool = False) -> str:
        try:
            return resolve_in_stack(
                self.stack_dir,
                value,
                allow_host_paths=host_ok and self.stack.allow_host_paths,
                what=what,
            )
        except PathEscape as exc:
            self.error(path, str(exc))
            return ""

    def read_source(self, path: FieldPath, value: str, what: str) -> tuple[str, bytes] | None:
        """Real path and contents of a config/secret file; contents never reach a message."""
        real = self.contained(path, value, what)
        if not real:
            return None
        try:
            with open(real, "rb") as f:
                return real, f.read()
        except FileNotFoundError:
            self.error(path, f"{what} `{value}` does not exist")
        except IsADirectoryError:
            self.error(path, f"{what} `{value}` is a directory, not a file")
        except OSError as exc:
            self.error(path, f"cannot read {what} `{value}`: {exc.strerror}")
        return None


def _name(ctx: _Context, path: FieldPath, name: str, kind: str, *, dns: bool = True) -> None:
    pattern = _DNS_LABEL if dns else _OBJECT_NAME
    if pattern.fullmatch(name) is None:
        rule = (
            "lowercase letters, digits and `-`, starting and ending with a letter or digit, "
            "at most 63 characters"
            if dns
            else "letters, digits, `_`, `.` and `-`, starting with a letter or digit"
        )
        ctx.error(path, f"invalid {kind} name `{name}`: use {rule}")


def normalise(
    stack: schema.StackFile,
    *,
    source: str,
    environ: Mapping[str, str] | None = None,
    port_start: int | None = None,
    max_replicas: int = limits.DEFAULT_MAX_REPLICAS,
) -> tuple[model.DesiredStack | None, list[FieldError]]:
    """Check and normalise one stack file. Returns the stack (None on errors) and the errors.

    `source` is the stack file's absolute path (relative paths resolve against
    its directory); `environ` is where `secrets.<x>.env` values come from;
    `port_start` is the lowest host port this process may bind (default: 0 for
    root, else the kernel's `ip_unprivileged_port_start`); `max_replicas` is
    the most replicas one pod may ask for.
    """
    ctx = _Context(
        stack,
        os.path.abspath(source),
        os.environ if environ is None else environ,
        unprivileged_port_start() if port_start is None else port_start,
        max_replicas,
    )
    _name(ctx, ("name",), stack.name, "stack")
    configs = _configs(ctx)
    secrets = _secrets(ctx)
    volumes = _volumes(ctx)
    digests = {("config", c.name): c.digest for c in configs} | {
        ("secret", s.name): s.digest for s in secrets
    }
    pods = [_pod(ctx, name, pod, digests) for name, pod in stack.pods.items()]
    _dependency_cycles(ctx)
    services = _services(ctx)
    history = model.HISTORY_LIMIT if stack.history is None else stack.history
    if history < 1:
        ctx.error(("history",), f"must be 1 or more, got {history}")
    if ctx.errors:
        return None, ctx.errors
    return (
        model.DesiredStack(
            name=stack.name,
            source=ctx.source,
            network=model.network_name(stack.name),
            pods=tuple(p for p in pods if p is not None),
            services=services,
            configs=configs,
            secrets=secrets,
            volumes=volumes,
            history=history,
        ),
        [],
    )


# ---------------------------------------------------------------- top-level objects


def _configs(ctx: _Context) -> tuple[model.DesiredConfig, ...]:
    out: list[model.DesiredConfig] = []
    for name, config in ctx.stack.configs.items():
        path: FieldPath = ("configs", name)
        _name(ctx, path, name, "config", dns=False)
        if (config.file is None) == (config.data is None):
            ctx.error(path, "a config needs exactly one of `file` or `data`")
            continue
        if config.data is not None:
            data = config.data.encode()
            out.append(model.DesiredConfig(name=name, digest=source_digest(data), data=data))
            continue
        assert config.file is not None
        found = ctx.read_source((*path, "file"), config.file, "config file")
        if found is not None:
            real, content = found
            out.append(model.DesiredConfig(name=name, digest=source_digest(content), file=real))
    return tuple(out)


def _secrets(ctx: _Context) -> tuple[model.DesiredSecret, ...]:
    out: list[model.DesiredSecret] = []
    for name, secret in ctx.stack.secrets.items():
        path: FieldPath = ("secrets", name)
        _name(ctx, path, name, "secret", dns=False)
        if (secret.file is None) == (secret.env is None):
            ctx.error(path, "a secret needs exactly one of `file` or `env`")
            continue
        if secret.env is not None:
            if _ENV_VAR.fullmatch(secret.env) is None:
                ctx.error((*path, "env"), f"invalid environment variable name `{secret.env}`")
                continue
            value = ctx.environ.get(secret.env)
            if value is None:
                # Name the variable, never a value.
                ctx.error(
                    (*path, "env"),
                    f"environment variable `{secret.env}` (source of secret `{name}`) is not set",
                )
                continue
            out.append(
                model.DesiredSecret(name=name, digest=source_digest(value.encode()), env=secret.env)
            )
            continue
        assert secret.file is not None
        found = ctx.read_source((*path, "file"), secret.file, "secret file")
        if found is not None:
            real, content = found
            out.append(model.DesiredSecret(name=name, digest=source_digest(content), file=real))
    return tuple(out)


def _volumes(ctx: _Context) -> tuple[model.DesiredVolume, ...]:
    out: list[model.DesiredVolume] = []
    for name, volume in ctx.stack.volumes.items():
        _name(ctx, ("volumes", name), name, "volume", dns=False)
        out.append(
            model.DesiredVolume(
                name=name,
                docker_name=model.volume_docker_name(ctx.stack.name, name),
                driver=volume.driver,
                options=tuple(sorted(volume.options.items())),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------- pods


def _pod(
    ctx: _Context, name: str, pod: schema.Pod, digests: Mapping[tuple[str, str], str]
) -> model.DesiredPod | None:
    path: FieldPath = ("pods", name)
    before = len(ctx.errors)
    _name(ctx, path, name, "pod")
    if pod.replicas < 0:
        ctx.error((*path, "replicas"), f"must be 0 or more, got {pod.replicas}")
    elif pod.replicas > ctx.max_replicas:
        ctx.error(
            (*path, "replicas"),
            f"must be at most {ctx.max_replicas}, got {pod.replicas} "
            "(raise the limit with --max-replicas if this is really meant)",
        )

    used: set[tuple[str, str]] = set()  # (kind, name) of configs/secrets this pod uses
    build = _build(ctx, name, pod, path)
    ports = _ports(ctx, pod, path)
    env, env_from = _env(ctx, pod, path, used)
    mounts = _mounts(ctx, pod, path, used)
    nano_cpus, memory = _resources(ctx, pod, path)

    for key in pod.labels:
        if key.startswith(labels.PREFIX):
            ctx.error((*path, "labels", key), f"labels under `{labels.PREFIX}` are podctl's own")
    if pod.workdir is not None and not posixpath.isabs(pod.workdir):
        ctx.error((*path, "workdir"), f"must be an absolute path, got `{pod.workdir}`")
    pids_limit = defaults.PIDS_LIMIT if pod.pids_limit is None else pod.pids_limit
    if pids_limit < 1:
        ctx.error((*path, "pids_limit"), "must be 1 or more")

    for i, dep in enumerate(pod.depends_on):
        if dep not in ctx.stack.pods:
            ctx.error((*path, "depends_on", i), f"unknown pod `{dep}`{_known(ctx.stack.pods)}")

    image = pod.image or ""
    if build is not None:
        image = model.build_tag(ctx.stack.name, name, build.digest)

    template = model.ContainerTemplate(
        image=image,
        command=_argv(ctx, (*path, "command"), pod.command),
        entrypoint=_argv(ctx, (*path, "entrypoint"), pod.entrypoint),
        env=env,
        env_from=env_from,
        user=pod.user,
        workdir=pod.workdir,
        labels=tuple(sorted(pod.labels.items())),
        ports=ports,
        nano_cpus=nano_cpus,
        memory_bytes=memory,
        mounts=mounts,
        read_only_rootfs=pod.read_only,
        cap_add=tuple(sorted(set(pod.cap_add))),
        cap_drop=tuple(sorted(set(pod.cap_drop))),
        pids_limit=pids_limit,
        stop_grace_s=ctx.duration(
            (*path, "stop_grace"), pod.stop_grace, defaults.STOP_GRACE_S, positive=False
        ),
        startup=_probe(ctx, "startup", pod.startup, ports, path),
        liveness=_probe(ctx, "liveness", pod.liveness, ports, path),
        readiness=_probe(ctx, "readiness", pod.readiness, ports, path),
    )
    rollout = _rollout(ctx, pod.rollout, (*path, "rollout"))
    develop = _develop(ctx, pod, path, mounts)
    if len(ctx.errors) > before:
        return None
    used_digests = [f"{kind}:{n}:{digests[(kind, n)]}" for kind, n in used if (kind, n) in digests]
    if build is not None:
        used_digests.append(f"build:{build.digest}")
    return model.DesiredPod(
        stack=ctx.stack.name,
        name=name,
        replicas=pod.replicas,
        template=template,
        revision=pod_revision(template, used_digests),
        build=build,
        restart=pod.restart,
        depends_on=tuple(dict.fromkeys(pod.depends_on)),
        rollout=rollout,
        develop=develop,
    )


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return f" (known: {', '.join(listed)})" if listed else " (none are defined)"


def _build(ctx: _Context, name: str, pod: schema.Pod, path: FieldPath) -> model.BuildSpec | None:
    if pod.image is None and pod.build is None:
        ctx.error(path, "a pod needs `image` or `build` (both: build, then push as `image`)")
        return None
    if pod.image is not None and (not pod.image.strip() or any(c.isspace() for c in pod.image)):
        ctx.error((*path, "image"), f"invalid image reference `{pod.image}`")
        return None
    if pod.build is None:
        return None
    where = (*path, "build")
    context = ctx.contained(where, pod.build, "build context", host_ok=True)
    if not context:
        return None
    if not os.path.isdir(context):
        ctx.error(where, f"build context `{pod.build}` is not a directory")
        return None
    if not os.path.isfile(os.path.join(context, "Dockerfile")):
        ctx.error(where, f"build context `{pod.build}` has no Dockerfile")
        return None
    try:
        digest = context_digest(context)
    except OSError as exc:
        ctx.error(where, f"cannot read build context `{pod.build}`: {exc.strerror}")
        return None
    return model.BuildSpec(context=context, digest=digest, push=pod.image)


def _ports(ctx: _Context, pod: schema.Pod, path: FieldPath) -> tuple[tuple[str, int], ...]:
    for port_name, number in pod.ports.items():
        where = (*path, "ports", port_name)
        if _PORT_NAME.fullmatch(port_name) is None or port_name.isdigit():
            ctx.error(where, f"invalid port name `{port_name}`: use letters, digits, `-`, `_`")
        if not 1 <= number <= 65535:
            ctx.error(where, f"port must be between 1 and 65535, got {number}")
    return tuple(sorted(pod.ports.items()))


def _port_ref(
    ctx: _Context,
    path: FieldPath,
    ref: schema.PortRef,
    ports: Iterable[tuple[str, int]],
    pod: str,
) -> int:
    """A port number, or the name of one of the pod's `ports`."""
    if isinstance(ref, str) and ref.isdigit():
        ref = int(ref)
    if isinstance(ref, int):
        if not 1 <= ref <= 65535:
            ctx.error(path, f"port must be between 1 and 65535, got {ref}")
        return ref
    named = dict(ports)
    if ref not in named:
        ctx.error(path, f"pod `{pod}` has no port named `{ref}`{_known(named)}")
        return 0
    return named[ref]


def _argv(ctx: _Context, path: FieldPath, value: list[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(value)
    try:
        # A string is split like a shell would, but never run through one.
        return tuple(shlex.split(value))
    except ValueError as exc:
        ctx.error(path, f"cannot split command: {exc}")
        return None


def _env(
    ctx: _Context, pod: schema.Pod, path: FieldPath, used: set[tuple[str, str]]
) -> tuple[tuple[tuple[str, str], ...], tuple[model.EnvFromSpec, ...]]:
    plain: list[tuple[str, str]] = []
    refs: list[model.EnvFromSpec] = []
    for key, value in pod.env.items():
        where = (*path, "env", key)
        if _ENV_NAME.fullmatch(key) is None:
            ctx.error(where, f"invalid environment variable name `{key}`")
            continue
        if isinstance(value, schema.EnvFrom):
            if (value.config is None) == (value.secret is None):
                ctx.error(where, "an env reference needs exactly one of `config` or `secret`")
                continue
            kind: Literal["config", "secret"]
            if value.config is not None:
                kind, source, known = "config", value.config, set(ctx.stack.configs)
            else:
                assert value.secret is not None
                kind, source, known = "secret", value.secret, set(ctx.stack.secrets)
            if source not in known:
                ctx.error((*where, kind), f"unknown {kind} `{source}`{_known(known)}")
                continue
            used.add((kind, source))
            refs.append(model.EnvFromSpec(name=key, kind=kind, source=source))
        elif isinstance(value, bool):
            plain.append((key, "true" if value else "false"))
        else:
            plain.append((key, str(value)))
    # Sorted: reordering keys in the file must not change the revision.
    return tuple(sorted(plain)), tuple(sorted(refs, key=lambda r: r.name))


def _resources(ctx: _Context, pod: schema.Pod, path: FieldPath) -> tuple[int, int]:
    if pod.resources is None:
        return 0, 0
    where = (*path, "resources")
    nano_cpus = memory = 0
    if pod.resources.cpus is not None:
        nano_cpus = int(ctx.parse((*where, "cpus"), parse_cpus, pod.resources.cpus) or 0)
    if pod.resources.memory is not None:
        memory = int(ctx.parse((*where, "memory"), parse_size, pod.resources.memory) or 0)
        if 0 < memory < MIN_MEMORY_BYTES:
            ctx.error((*where, "memory"), "Docker needs a memory limit of at least 6Mi")
    return nano_cpus, memory


def _probe(
    ctx: _Context,
    kind: model.ProbeKind,
    probe: schema.Probe | None,
    ports: tuple[tuple[str, int], ...],
    pod_path: FieldPath,
) -> model.ProbeSpec | None:
    if probe is None:
        return None
    path = (*pod_path, kind)
    pod = str(pod_path[-1])
    checks = [c for c in (probe.http, probe.tcp, probe.exec) if c is not None]
    check: model.ProbeCheck | None = None
    if len(checks) != 1:
        ctx.error(path, "a probe needs exactly one of `http`, `tcp` or `exec`")
    elif probe.http is not None:
        http_path = probe.http.path
        if not http_path.startswith("/"):
            ctx.error((*path, "http", "path"), f"must start with `/`, got `{http_path}`")
        check = model.HttpProbe(
            port=_port_ref(ctx, (*path, "http", "port"), probe.http.port, ports, pod),
            path=http_path,
            scheme=probe.http.scheme,
            headers=tuple(sorted(probe.http.headers.items())),
        )
    elif probe.tcp is not None:
        check = model.TcpProbe(
            port=_port_ref(ctx, (*path, "tcp", "port"), probe.tcp.port, ports, pod)
        )
    elif probe.exec is not None:
        if not probe.exec:
            ctx.error((*path, "exec"), "needs a command, e.g. [cat, /tmp/healthy]")
        check = model.ExecProbe(command=tuple(probe.exec))

    success = defaults.PROBE_SUCCESS_THRESHOLD
    if probe.success_threshold is not None:
        success = probe.success_threshold
        if success < 1:
            ctx.error((*path, "success_threshold"), "must be 1 or more")
        elif kind != "readiness" and success != 1:
            # Kubernetes: "Must be 1 for liveness and startup."
            ctx.error((*path, "success_threshold"), f"must be 1 for a {kind} probe")
    failure = defaults.PROBE_FAILURE_THRESHOLD
    if probe.failure_threshold is not None:
        failure = probe.failure_threshold
        if failure < 1:
            ctx.error((*path, "failure_threshold"), "must be 1 or more")
    spec = model.ProbeSpec(
        check=check or model.ExecProbe(command=()),
        initial_delay_s=ctx.duration(
            (*path, "initial_delay"),
            probe.initial_delay,
            defaults.PROBE_INITIAL_DELAY_S,
            positive=False,
        ),
        period_s=ctx.duration(
            (*path, "period"), probe.period, defaults.PROBE_PERIOD_S, positive=True
        ),
        timeout_s=ctx.duration(
            (*path, "timeout"), probe.timeout, defaults.PROBE_TIMEOUT_S, positive=True
        ),
        success_threshold=success,
        failure_threshold=failure,
    )
    return spec if check is not None else None


def _rollout(ctx: _Context, rollout: schema.Rollout | None, path: FieldPath) -> model.RolloutSpec:
    if rollout is None:
        return model.RolloutSpec()
    surge = _rollout_amount(ctx, (*path, "max_surge"), rollout.max_surge)
    unavailable = _rollout_amount(ctx, (*path, "max_unavailable"), rollout.max_unavailable)
    if surge is None or unavailable is None:
        return model.RolloutSpec()
    if rollout.strategy == "rolling" and _is_zero(surge) and _is_zero(unavailable):
        # As in Kubernetes: with neither, a rollout could never make progress.
        ctx.error(path, "max_surge and max_unavailable cannot both be 0")
    min_ready = ctx.duration(
        (*path, "min_ready"), rollout.min_ready, model.ROLLOUT_MIN_READY_S, positive=False
    )
    if min_ready < 0:
        ctx.error((*path, "min_ready"), "must be 0s or more")
    deadline = ctx.duration(
        (*path, "progress_deadline"),
        rollout.progress_deadline,
        model.ROLLOUT_PROGRESS_DEADLINE_S,
        positive=True,
    )
    if deadline > 0 and deadline <= min_ready:
        # As in Kubernetes: no replica could ever count as available in time.
        ctx.error((*path, "progress_deadline"), "must be longer than min_ready")
    return model.RolloutSpec(
        strategy=rollout.strategy,
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_s=min_ready,
        progress_deadline_s=deadline,
        auto_rollback=rollout.auto_rollback,
    )


def _rollout_amount(ctx: _Context, path: FieldPath, value: int | str) -> int | str | None:
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        else:
            match = _PERCENT.fullmatch(text)
            if match is None or int(match.group(1)) > 100:
                ctx.error(path, f"must be a count or a percentage like `25%`, got `{value}`")
                return None
            return f"{int(match.group(1))}%"
    if value < 0:
        ctx.error(path, f"must be 0 or more, got {value}")
        return None
    return value


def _is_zero(amount: int | str) -> bool:
    return amount == 0 or amount == "0%"


def _mounts(
    ctx: _Context, pod: schema.Pod, path: FieldPath, used: set[tuple[str, str]]
) -> tuple[model.MountSpec, ...]:
    out: list[model.MountSpec] = []
    targets: dict[str, int] = {}
    for i, mount in enumerate(pod.mounts):
        where = (*path, "mounts", i)
        spec = _mount(ctx, mount, where, used)
        if spec is None:
            continue
        if spec.target in targets:
            ctx.error(
                (*where, "path"),
                f"two mounts on `{spec.target}` (also mounts[{targets[spec.target]}])",
            )
            continue
        targets[spec.target] = i
        out.append(spec)
    if pod.read_only and "/tmp" not in targets:
        # A read-only root filesystem still needs somewhere to write scratch files.
        out.append(model.MountSpec(kind="tmpfs", source="", target="/tmp"))
    return tuple(out)


def _mount(
    ctx: _Context, mount: schema.Mount, where: FieldPath, used: set[tuple[str, str]]
) -> model.MountSpec | None:
    candidates: list[tuple[model.MountKind, str | None]] = [
        ("volume", mount.volume),
        ("bind", mount.bind),
        ("config", mount.config),
        ("secret", mount.secret),
    ]
    kinds = {k: v for k, v in candidates if v is not None}
    if len(kinds) != 1:
        ctx.error(where, "a mount needs exactly one of `volume`, `bind`, `config` or `secret`")
        return None
    ((kind, source),) = kinds.items()
    file_like = kind in ("config", "secret")
    if not file_like and mount.mode is not None:
        ctx.error((*where, "mode"), "`mode` applies only to config and secret mounts")
    if kind != "secret" and (mount.uid is not None or mount.gid is not None):
        ctx.error(where, "`uid` and `gid` apply only to secret mounts")
    if file_like and mount.read_only is False:
        ctx.error((*where, "read_only"), f"{kind} mounts are always read-only")

    target_value = mount.path
    if target_value is None:
        if kind != "secret":
            ctx.error(where, f"a {kind} mount needs `path` (where it appears in the container)")
            return None
        target_value = f"{SECRETS_DIR}/{source}"
    if not posixpath.isabs(target_value):
        ctx.error((*where, "path"), f"must be an absolute path, got `{target_value}`")
        return None
    target = posixpath.normpath(target_value)
    if target in ("/", "//"):
        ctx.error((*where, "path"), "cannot mount over `/`")
        return None

    mode: int | None = None
    if file_like:
        mode = SECRET_MODE if kind == "secret" else CONFIG_MODE
        if mount.mode is not None:
            parsed = ctx.parse((*where, "mode"), parse_mode, mount.mode)
            mode = mode if parsed is None else int(parsed)

    if kind == "volume":
        if source not in ctx.stack.volumes:
            ctx.error((*where, kind), f"unknown volume `{source}`{_known(ctx.stack.volumes)}")
            return None
    elif kind == "bind":
        host = ctx.contained((*where, kind), source, "bind source", host_ok=True)
        if not host:
            return None
        if not os.path.exists(host):
            ctx.error((*where, kind), f"bind source `{source}` does not exist")
            return None
        source = host
    else:
        known = ctx.stack.configs if kind == "config" else ctx.stack.secrets
        if source not in known:
            ctx.error((*where, kind), f"unknown {kind} `{source}`{_known(known)}")
            return None
        used.add((kind, source))
    return model.MountSpec(
        kind=kind,
        source=source,
        target=target,
        read_only=True if file_like else bool(mount.read_only),
        mode=mode,
        uid=mount.uid,
        gid=mount.gid,
    )


def _dependency_cycles(ctx: _Context) -> None:
    """Report each `depends_on` cycle once, naming the whole loop."""
    graph = {
        name: [d for d in dict.fromkeys(pod.depends_on) if d in ctx.stack.pods]
        for name, pod in ctx.stack.pods.items()
    }
    done: set[str] = set()
    seen_cycles: set[frozenset[str]] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = trail[trail.index(node) :]
            key = frozenset(cycle)
            if key not in seen_cycles:
                seen_cycles.add(key)
                loop = " -> ".join([*cycle, node])
                ctx.error(("pods", cycle[0], "depends_on"), f"dependency cycle: {loop}")
            return
        if node in done:
            return
        trail.append(node)
        for dep in graph[node]:
            visit(dep, trail)
        trail.pop()
        done.add(node)

    for name in graph:
        visit(name, [])


# ---------------------------------------------------------------- services


def _services(ctx: _Context) -> tuple[model.DesiredService, ...]:
    out: list[model.DesiredService] = []
    host_ports: dict[int, str] = {}
    for name, service in ctx.stack.services.items():
        path: FieldPath = ("services", name)
        before = len(ctx.errors)
        _name(ctx, path, name, "service")
        pod = ctx.stack.pods.get(service.pod)
        target = 0
        if pod is None:
            ctx.error((*path, "pod"), f"unknown pod `{service.pod}`{_known(ctx.stack.pods)}")
        else:
            target = _port_ref(
                ctx, (*path, "target"), service.target, tuple(pod.ports.items()), service.pod
            )
        bind = defaults.PROXY_BIND if service.bind is None else service.bind
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            ctx.error((*path, "bind"), f"`{bind}` is not an IP address")
        if service.port is not None:
            where = (*path, "port")
            if not 1 <= service.port <= 65535:
                ctx.error(where, f"port must be between 1 and 65535, got {service.port}")
            elif service.port < ctx.port_start:
                ctx.error(
                    where,
                    f"host port {service.port} is privileged (below {ctx.port_start}) and podctl "
                    f"is not running as root; use a port of {ctx.port_start} or more",
                )
            elif service.port in host_ports:
                ctx.error(
                    where,
                    f"host port {service.port} is also used by service "
                    f"`{host_ports[service.port]}`",
                )
            else:
                host_ports[service.port] = name
        if len(ctx.errors) == before:
            out.append(
                model.DesiredService(
                    stack=ctx.stack.name,
                    name=name,
                    pod=service.pod,
                    target_port=target,
                    port=service.port,
                    bind=bind,
                )
            )
    return tuple(out)


# ---------------------------------------------------------------- develop (podctl dev)


def _develop(
    ctx: _Context, pod: schema.Pod, path: FieldPath, mounts: tuple[model.MountSpec, ...]
) -> model.DevelopSpec | None:
    """`develop.watch` rules, checked whatever the command (a stack that `podctl dev`
    would refuse is refused by `podctl run` too, so the file has one meaning)."""
    if pod.develop is None:
        return None
    rules: list[model.WatchRuleSpec] = []
    for i, rule in enumerate(pod.develop.watch):
        spec = _watch_rule(ctx, pod, (*path, "develop", "watch", i), rule, mounts)
        if spec is not None:
            rules.append(spec)
    return model.DevelopSpec(watch=tuple(rules))


def _watch_rule(
    ctx: _Context,
    pod: schema.Pod,
    where: FieldPath,
    rule: schema.WatchRule,
    mounts: tuple[model.MountSpec, ...],
) -> model.WatchRuleSpec | None:
    before = len(ctx.errors)
    # Never a host path: a watch rule copies files into containers, and a stack
    # copied from someone else must not be able to ship the host's files.
    host = ctx.contained((*where, "path"), rule.path, "watch path")
    if host and not os.path.exists(host):
        ctx.error((*where, "path"), f"watch path `{rule.path}` does not exist")
    syncs = rule.action in model.SYNC_ACTIONS
    target: str | None = None
    if syncs:
        if rule.target is None:
            ctx.error(where, f"a `{rule.action}` rule needs `target` (an absolute container path)")
        elif not posixpath.isabs(rule.target):
            ctx.error((*where, "target"), f"must be an absolute path, got `{rule.target}`")
        else:
            target = posixpath.normpath(rule.target)
            if pod.read_only and not _writable_at(mounts, target):
                ctx.error(
                    (*where, "target"),
                    f"the pod has a read-only root filesystem (`read_only: true`) and `{target}` "
                    "is not under a writable mount; sync into a volume or tmpfs, or drop read_only",
                )
    else:
        if rule.target is not None:
            ctx.error(
                (*where, "target"), f"`target` applies only to sync actions, not `{rule.action}`"
            )
        if rule.initial_sync:
            ctx.error(
                (*where, "initial_sync"),
                f"`initial_sync` applies only to sync actions, not `{rule.action}`",
            )
    if rule.action == "rebuild" and pod.build is None:
        ctx.error((*where, "action"), "`rebuild` needs the pod to have `build:`")
    exec_spec: model.WatchExecSpec | None = None
    if rule.action == "sync+exec":
        if rule.exec is None:
            ctx.error(where, "a `sync+exec` rule needs `exec: {command: [...]}`")
        else:
            command = _argv(ctx, (*where, "exec", "command"), rule.exec.command)
            if command is not None and not command:
                ctx.error((*where, "exec", "command"), "needs a command, e.g. [kill, -HUP, 1]")
            if rule.exec.workdir is not None and not posixpath.isabs(rule.exec.workdir):
                ctx.error(
                    (*where, "exec", "workdir"),
                    f"must be an absolute path, got `{rule.exec.workdir}`",
                )
            exec_spec = model.WatchExecSpec(
                command=command or (), user=rule.exec.user, workdir=rule.exec.workdir
            )
    elif rule.exec is not None:
        ctx.error((*where, "exec"), f"`exec` applies only to `sync+exec`, not `{rule.action}`")
    for key in ("ignore", "include"):
        for j, pattern in enumerate(getattr(rule, key)):
            if not pattern.strip():
                ctx.error((*where, key, j), "an empty pattern matches nothing; remove it")
            elif "\0" in pattern:
                ctx.error((*where, key, j), "a pattern cannot contain a NUL byte")
    if len(ctx.errors) > before:
        return None
    return model.WatchRuleSpec(
        path=host,
        action=rule.action,
        target=target,
        ignore=tuple(rule.ignore),
        include=tuple(rule.include),
        initial_sync=rule.initial_sync,
        exec=exec_spec,
    )


def _writable_at(mounts: Iterable[model.MountSpec], target: str) -> bool:
    """Whether `target` lies under a writable volume, bind or tmpfs mount (the deepest
    mount holding it decides, as in the container's own mount table)."""
    best: model.MountSpec | None = None
    for m in mounts:
        under = target == m.target or target.startswith(m.target.rstrip("/") + "/")
        if under and (best is None or len(m.target) > len(best.target)):
            best = m
    return best is not None and best.kind in ("volume", "bind", "tmpfs") and not best.read_only
