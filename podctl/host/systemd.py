"""The systemd unit `podctl systemd unit` prints: a notify service, enable-able, hardened.

The unit is plain text generated from a few options, so it can be reviewed, diffed and
installed by hand (`> /etc/systemd/system/podctl.service`): no generator runs at boot, a
complaint users have about podman's quadlet units ("transient or generated" units that
cannot be enabled, podman#17567).

How far the sandbox goes, and why it stops where it does:

* podctl talks to dockerd's socket. That socket is root-equivalent (anyone who can use
  it can start a privileged container), so the sandbox limits what podctl's *own* code
  can do if it misbehaves (a path bug in the file materialiser, a parser exploit), not
  what it may ask dockerd to do. `systemd-analyze security` cannot see that trade-off.
* User= stays root (not DynamicUser=/a docker group member): the secret files podctl
  materialises are chowned to the container's uid, and with --kernel-proxy it drives
  nftables; a docker-group user would be root-equivalent anyway. Every capability except
  the few listed below is dropped, so this "root" cannot override file permissions,
  ptrace, load modules, mount, change the clock, etc.
* CapabilityBoundingSet= keeps CAP_CHOWN and CAP_FOWNER (configs/secrets with `uid`/`gid`
  are written, fchown'ed then fchmod'ed to the container user, see storage/atomic.py),
  CAP_NET_BIND_SERVICE (a service may listen on a host port below 1024, e.g. 80/443),
  and CAP_NET_ADMIN only with --kernel-proxy (nftables). No CAP_DAC_OVERRIDE: stack
  files and secret source files must be readable by root as their owner or by mode.
* PrivateNetwork=/IPAddressDeny=/RestrictAddressFamilies= cannot shut the network: the
  userspace proxy listens on host ports for any client and connects to containers;
  AF_UNIX is dockerd's socket, the control socket and sd_notify; AF_NETLINK only for
  nftables (--kernel-proxy).
* ProtectSystem=strict needs no ReadWritePaths=: RuntimeDirectory=/StateDirectory= are
  writable, and connecting to /run/docker.sock works on a read-only mount (a socket is not
  a file write). Listing the socket itself would bind-mount its inode, and a restarted
  dockerd creates a new socket at that path that podctl would never see.
* ProcSubset=pid is not set: podctl reads /proc/mounts (is the runtime dir tmpfs?),
  /proc/sys/net/ipv4/ip_unprivileged_port_start and, with --kernel-proxy, /proc/net/route.
* ProtectKernelTunables=yes, but with --kernel-proxy /proc/sys/net/ipv4/conf is writable
  again: route_localnet is switched on for loopback-listening services.
* RootDirectory=/RootImage= and PrivateUsers= are not used: podctl runs from the host's
  Python installation and needs the host's uid 0 for dockerd's socket and chown.
* ProtectHome=yes and PrivateTmp=yes would hide podctl itself or the stacks directory when
  they live under /home, /root or /tmp: then ProtectHome=read-only / PrivateTmp=no (with a
  comment in the unit saying so).

The lifecycle: SIGTERM leaves pods running (`run --keep`), the next start adopts them;
`podctl down STACK` or removing a stack's file from the stacks directory removes pods.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DEFAULT_NAME = "podctl"
DEFAULT_STACKS_DIR = PurePosixPath("/etc/podctl/stacks")
# One stored descriptor per service listener; systemd's default is 0 (no store).
DEFAULT_FD_STORE_MAX = 512
# podctl pings at half this period from its main event loop, so a loop stalled for
# longer than this gets the service restarted.
DEFAULT_WATCHDOG_SEC = 30
# READY waits for every pod; podctl extends this while images are pulled or built
# (EXTEND_TIMEOUT_USEC) and sends READY anyway after its own --ready-timeout.
DEFAULT_TIMEOUT_START_SEC = 300
# Proxied connections hold two descriptors each; systemd's default soft limit is 1024.
DEFAULT_LIMIT_NOFILE = 65536

# Directory trees that ProtectHome= and PrivateTmp= hide from the service.
HOME_TREES = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
TMP_TREES = (PurePosixPath("/tmp"), PurePosixPath("/var/tmp"))

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


class UnitError(ValueError):
    """An option the unit cannot be generated with (bad name, relative path, ...)."""


@dataclass(frozen=True)
class UnitOptions:
    """What the unit is generated from (all paths absolute)."""

    # The podctl command line up to (not including) `run`: [/path/to/podctl] or
    # [/path/to/python, -m, podctl].
    command: tuple[str, ...]
    stacks_dir: PurePosixPath = DEFAULT_STACKS_DIR
    name: str = DEFAULT_NAME
    notify_reload: bool = False
    kernel_proxy: bool = False
    watchdog_sec: int = DEFAULT_WATCHDOG_SEC
    timeout_start_sec: int = DEFAULT_TIMEOUT_START_SEC
    fd_store_max: int = DEFAULT_FD_STORE_MAX
    # Paths the service must be able to read besides `command` and `stacks_dir`: the
    # Python installation behind the podctl script (see `interpreter_paths`).
    read_paths: tuple[PurePosixPath, ...] = field(default=())


def podctl_command(argv0: str | None = None) -> tuple[str, ...]:
    """The absolute command that runs this podctl, for ExecStart=.

    The console script we were started as (argv[0]) when it is a file, else `podctl`
    on $PATH, else this interpreter with `-m podctl`. Symlinks are kept, not resolved:
    /usr/local/bin/podctl -> a venv keeps working when the venv is replaced, and a venv's
    bin/python must stay the venv's (resolving it would leave the venv).
    """
    arg = sys.argv[0] if argv0 is None else argv0
    if arg and os.path.basename(arg) == "podctl":
        path = Path(arg) if os.sep in arg else Path(shutil.which(arg) or arg)
        if path.is_file() and os.access(path, os.X_OK):
            return (str(path.absolute()),)
    found = shutil.which("podctl")
    if found:
        return (str(Path(found).absolute()),)
    return (str(Path(sys.executable).absolute()), "-m", "podctl")


def interpreter_paths() -> tuple[PurePosixPath, ...]:
    """Where this Python lives (venv and base installation, symlinks resolved)."""
    return tuple(
        sorted({PurePosixPath(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)})
    )


def quote_exec_arg(arg: str) -> str:
    """One argument of an Exec*= line, quoted so systemd passes it through unchanged.

    `%` starts a specifier and `$` an environment variable in Exec lines: both are
    doubled. Whitespace, quotes, backslashes and `;` need double quotes.
    """
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise UnitError(f"cannot put {arg!r} on an ExecStart= line (newline or NUL)")
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not re.search(r"[\s\"'\\;]", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _under(path: PurePosixPath, trees: tuple[PurePosixPath, ...]) -> bool:
    return any(path == t or t in path.parents for t in trees)


def _check(options: UnitOptions) -> None:
    if not _NAME.match(options.name) or options.name.endswith(".service"):
        raise UnitError(
            f"--name {options.name!r}: use letters, digits and _.@- (it names the unit "
            f"and its /run and /var/lib directories), without .service"
        )
    if not options.command or not options.command[0].startswith("/"):
        raise UnitError(f"the podctl command must be an absolute path, not {options.command}")
    if not options.stacks_dir.is_absolute():
        raise UnitError(f"--stacks-dir {options.stacks_dir}: must be an absolute path")
    for what, value in (
        ("watchdog", options.watchdog_sec),
        ("start timeout", options.timeout_start_sec),
        ("fd store size", options.fd_store_max),
    ):
        if value <= 0:
            raise UnitError(f"{what} must be positive, not {value}")


def render_unit(options: UnitOptions) -> str:
    """The unit file's text (pure: reads nothing, touches nothing)."""
    _check(options)
    name = options.name
    run_args = [*options.command, "run", "--stacks-dir", str(options.stacks_dir), "--keep"]
    if options.kernel_proxy:
        run_args.append("--kernel-proxy")
    exec_start = " ".join(quote_exec_arg(a) for a in run_args)
    needed = [PurePosixPath(options.command[0]), options.stacks_dir, *options.read_paths]
    home_needed = [str(p) for p in needed if _under(p, HOME_TREES)]
    tmp_needed = [str(p) for p in needed if _under(p, TMP_TREES)]

    caps = ["CAP_CHOWN", "CAP_FOWNER", "CAP_NET_BIND_SERVICE"]
    families = ["AF_UNIX", "AF_INET", "AF_INET6"]
    if options.kernel_proxy:
        caps.append("CAP_NET_ADMIN")
        families.append("AF_NETLINK")

    lines = [
        f"# {name}.service, generated by `podctl systemd unit`.",
        f"# Install: podctl systemd unit ... > /etc/systemd/system/{name}.service",
        f"#          systemctl daemon-reload && systemctl enable --now {name}",
        f"# Every *.yaml, *.yml and *.toml file in {options.stacks_dir} is a stack.",
        "# Stopping or restarting this service leaves the pods running (run --keep): the",
        "# next start adopts them, and listeners come back from the descriptor store, so",
        "# a restart refuses no connection. `podctl down STACK` or removing a stack's file",
        "# removes its pods. (A plain `podctl run` without --keep removes them on exit.)",
        "",
        "[Unit]",
        f"Description=podctl: pods of the stacks in {options.stacks_dir}",
        # Wants=, not Requires=: Requires= would stop podctl on `systemctl stop docker`
        # and leave it stopped after `systemctl start docker`. podctl rides out an engine
        # restart itself (reports `engine unavailable`, reconnects, converges).
        "Wants=docker.service network-online.target",
        "After=docker.service docker.socket network-online.target",
        "",
        "[Service]",
    ]
    if options.notify_reload:
        lines += [
            "# notify-reload needs systemd >= 253: systemd sends SIGHUP and waits for",
            "# RELOADING=1 ... READY=1 itself.",
            "Type=notify-reload",
            "ReloadSignal=SIGHUP",
        ]
    else:
        lines += [
            "Type=notify",
            "# podctl answers SIGHUP with RELOADING=1, re-reads every stack, then READY=1.",
            "ExecReload=kill -HUP $MAINPID",
        ]
    lines += [
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        # The directories podctl uses: the unit's own, created 0700 by systemd.
        f"Environment=PODCTL_RUNTIME_DIR=%t/{name} PODCTL_STATE_DIR=%S/{name}",
        "Environment=PYTHONDONTWRITEBYTECODE=1",
        f"RuntimeDirectory={name}",
        "RuntimeDirectoryMode=0700",
        "# Running pods bind-mount configs and secrets from here: keep it across restarts.",
        "RuntimeDirectoryPreserve=yes",
        f"StateDirectory={name}",
        "StateDirectoryMode=0700",
        f"WatchdogSec={options.watchdog_sec}s",
        f"TimeoutStartSec={options.timeout_start_sec}s",
        "TimeoutStopSec=60s",
        "Restart=on-failure",
        "RestartSec=5s",
        "# SIGTERM to podctl only; its helpers (nft) finish before the final SIGKILL.",
        "KillMode=mixed",
        "# One stored listener per service: restarts hand them back as LISTEN_FDS.",
        f"FileDescriptorStoreMax={options.fd_store_max}",
        f"LimitNOFILE={DEFAULT_LIMIT_NOFILE}",
        "UMask=0077",
        "",
        "# Sandbox. User= stays root: dockerd's socket is root-equivalent anyway, and",
        "# secret files are chowned to container users. Capabilities are dropped instead.",
        f"CapabilityBoundingSet={' '.join(caps)}",
        "AmbientCapabilities=",
        "NoNewPrivileges=yes",
        "# Read-only OS; /run/docker.sock stays connectable (a socket is no file write).",
        "ProtectSystem=strict",
    ]
    if home_needed:
        lines += [
            f"# read-only, not yes: podctl needs {', '.join(sorted(set(home_needed)))}",
            "ProtectHome=read-only",
        ]
    else:
        lines.append("ProtectHome=yes")
    if tmp_needed:
        lines += [
            f"# PrivateTmp=yes would hide {', '.join(sorted(set(tmp_needed)))}",
            "PrivateTmp=no",
        ]
    else:
        lines.append("PrivateTmp=yes")
    lines += [
        "PrivateDevices=yes",
        "PrivateIPC=yes",
        "PrivateMounts=yes",
        "ProtectKernelTunables=yes",
    ]
    if options.kernel_proxy:
        lines += [
            "# --kernel-proxy switches route_localnet on for loopback-listening services.",
            "ReadWritePaths=/proc/sys/net/ipv4/conf",
        ]
    lines += [
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "# The proxy serves host ports to any client: no PrivateNetwork=/IPAddressDeny=.",
        f"RestrictAddressFamilies={' '.join(families)}",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@resources",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
