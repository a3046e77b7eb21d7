"""The unit text: what a reviewer of /etc/systemd/system/podctl.service checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

import pytest

from podctl.host import systemd as unit
from podctl.host.systemd import UnitError, UnitOptions, render_unit


def directives(text: str) -> dict[str, list[str]]:
    """KEY -> every value it is given, comments and section headers left out."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def sections(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[")]


BASE = UnitOptions(command=("/usr/local/bin/podctl",))


def test_a_notify_service_that_can_be_enabled() -> None:
    text = render_unit(BASE)
    d = directives(text)
    assert sections(text) == ["[Unit]", "[Service]", "[Install]"]
    assert d["WantedBy"] == ["multi-user.target"]
    assert "docker.service" in d["After"][0].split()
    assert "docker.service" in d["Wants"][0].split()
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["ExecStart"] == ["/usr/local/bin/podctl run --stacks-dir /etc/podctl/stacks --keep"]
    assert d["ExecReload"] == ["kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert d["WatchdogSec"] == ["30s"]
    assert d["TimeoutStartSec"] == ["300s"]
    assert int(d["FileDescriptorStoreMax"][0]) >= 512
    assert d["RuntimeDirectory"] == ["podctl"] and d["StateDirectory"] == ["podctl"]
    assert "PODCTL_RUNTIME_DIR=%t/podctl PODCTL_STATE_DIR=%S/podctl" in d["Environment"]


def test_hardening_directives() -> None:
    d = directives(render_unit(BASE))
    for key in (
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert d[key] == ["yes"], key
    assert d["ProtectSystem"] == ["strict"]
    assert d["SystemCallArchitectures"] == ["native"]
    assert "@system-service" in d["SystemCallFilter"]
    assert d["UMask"] == ["0077"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    caps = d["CapabilityBoundingSet"][0].split()
    assert "CAP_NET_ADMIN" not in caps and "CAP_SYS_ADMIN" not in caps
    assert "CAP_DAC_OVERRIDE" not in caps
    # The docker socket is not bind-mounted (dockerd recreates it on restart).
    assert "ReadWritePaths" not in d


def test_kernel_proxy_adds_netlink_and_net_admin_only_when_asked() -> None:
    d = directives(render_unit(UnitOptions(command=BASE.command, kernel_proxy=True)))
    assert "CAP_NET_ADMIN" in d["CapabilityBoundingSet"][0].split()
    assert "AF_NETLINK" in d["RestrictAddressFamilies"][0].split()
    assert d["ReadWritePaths"] == ["/proc/sys/net/ipv4/conf"]
    assert d["ExecStart"][0].endswith(" --keep --kernel-proxy")


def test_notify_reload_lets_systemd_send_sighup() -> None:
    d = directives(render_unit(UnitOptions(command=BASE.command, notify_reload=True)))
    assert d["Type"] == ["notify-reload"]
    assert d["ReloadSignal"] == ["SIGHUP"]
    assert "ExecReload" not in d


def test_name_and_stacks_dir() -> None:
    d = directives(
        render_unit(
            UnitOptions(command=BASE.command, name="edge", stacks_dir=PurePosixPath("/srv/st"))
        )
    )
    assert d["RuntimeDirectory"] == ["edge"] and d["StateDirectory"] == ["edge"]
    assert "PODCTL_RUNTIME_DIR=%t/edge PODCTL_STATE_DIR=%S/edge" in d["Environment"]
    assert "--stacks-dir /srv/st" in d["ExecStart"][0]


def test_podctl_under_home_or_tmp_loosens_only_what_hides_it() -> None:
    d = directives(
        render_unit(
            UnitOptions(
                command=("/root/venv/bin/podctl",),
                stacks_dir=PurePosixPath("/tmp/stacks"),
            )
        )
    )
    assert d["ProtectHome"] == ["read-only"]
    assert d["PrivateTmp"] == ["no"]
    d = directives(
        render_unit(
            UnitOptions(command=BASE.command, read_paths=(PurePosixPath("/home/u/.pyenv"),))
        )
    )
    assert d["ProtectHome"] == ["read-only"]
    assert d["PrivateTmp"] == ["yes"]


def test_exec_arguments_are_quoted_for_systemd() -> None:
    assert unit.quote_exec_arg("/usr/bin/podctl") == "/usr/bin/podctl"
    assert unit.quote_exec_arg("/srv/my stacks") == '"/srv/my stacks"'
    assert unit.quote_exec_arg("/srv/100%") == "/srv/100%%"
    assert unit.quote_exec_arg("/srv/$HOME") == "/srv/$$HOME"
    assert unit.quote_exec_arg('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(UnitError):
        unit.quote_exec_arg("a\nb")
    text = render_unit(UnitOptions(command=BASE.command, stacks_dir=PurePosixPath("/srv/a b")))
    assert '--stacks-dir "/srv/a b"' in text


@pytest.mark.parametrize(
    "options",
    [
        UnitOptions(command=BASE.command, name="a b"),
        UnitOptions(command=BASE.command, name="podctl.service"),
        UnitOptions(command=BASE.command, name="../x"),
        UnitOptions(command=("podctl",)),
        UnitOptions(command=BASE.command, stacks_dir=PurePosixPath("stacks")),
        UnitOptions(command=BASE.command, watchdog_sec=0),
    ],
)
def test_bad_options_are_refused(options: UnitOptions) -> None:
    with pytest.raises(UnitError):
        render_unit(options)


def test_podctl_command_prefers_the_script_we_run_as(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "podctl"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert unit.podctl_command(str(script)) == (str(script),)
    # Run as `python -m podctl`: this interpreter, not resolved out of its venv.
    cmd = unit.podctl_command("/somewhere/podctl/__main__.py")
    assert cmd[1:] == ("-m", "podctl") or cmd[0].endswith("/podctl")
    assert os.path.isabs(cmd[0])


def test_podctl_command_falls_back_to_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert unit.podctl_command("/x/__main__.py") == (
        str(Path(sys.executable).absolute()),
        "-m",
        "podctl",
    )
