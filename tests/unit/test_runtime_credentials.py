"""Registry credentials read as the docker CLI reads them (config.json, helpers)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from podctl.runtime.credentials import DOCKER_HUB, credentials, registry_auth, registry_of


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("busybox:1.36", DOCKER_HUB),
        ("library/busybox", DOCKER_HUB),
        ("ghcr.io/org/app:1", "ghcr.io"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000"),
        ("localhost/app", "localhost"),
    ],
)
def test_registry_of(ref: str, registry: str) -> None:
    assert registry_of(ref) == registry


def config(tmp_path: Path, data: object) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return {"DOCKER_CONFIG": str(tmp_path), "PATH": os.environ.get("PATH", "")}


def test_auths_entry_and_header(tmp_path: Path) -> None:
    token = base64.b64encode(b"me:p:w").decode()
    env = config(tmp_path, {"auths": {"https://ghcr.io": {"auth": token}}})
    assert credentials("ghcr.io", env) == {
        "username": "me",
        "password": "p:w",
        "serveraddress": "ghcr.io",
    }
    header = registry_auth("ghcr.io/org/app:1", env)
    assert header is not None
    assert json.loads(base64.urlsafe_b64decode(header))["username"] == "me"
    assert registry_auth("busybox", env) is None


def test_missing_or_broken_config_is_anonymous(tmp_path: Path) -> None:
    assert credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
    (tmp_path / "config.json").write_text("{not json")
    assert credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path)}) is None


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-test"
    helper.parent.mkdir()
    helper.write_text(
        '#!/bin/sh\nread server\necho "{\\"Username\\": \\"u-$server\\", \\"Secret\\": \\"s\\"}"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    env = config(tmp_path, {"credHelpers": {"reg.example:5000": "test"}})
    found = credentials("reg.example:5000", env)
    assert found == {
        "username": "u-reg.example:5000",
        "password": "s",
        "serveraddress": "reg.example:5000",
    }
    assert credentials("other.example", env) is None
