"""Registry credentials from the user's Docker client configuration.

Pulls and pushes go through the engine API, which takes credentials per call in
the `X-Registry-Auth` header (base64url JSON), exactly as the `docker` CLI sends
them. They come from the same place the CLI reads: `$DOCKER_CONFIG/config.json`
or `~/.docker/config.json` --

- `credHelpers[<registry>]` or `credsStore`: the helper program
  `docker-credential-<name> get` answers with `{"Username", "Secret"}`;
- `auths[<registry>].auth`: base64 of `user:password` (what `docker login`
  writes when no store is configured), or `identitytoken`.

The registry of an image is its first path component when that looks like a
host (has a `.` or `:`, or is `localhost`); otherwise it is Docker Hub, filed
under `https://index.docker.io/v1/`. Values are read per call, never cached or
logged; a missing or unreadable file means "no credentials" (anonymous), as for
the CLI. Blocking: callers run `registry_auth` in a worker thread.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

DOCKER_HUB = "https://index.docker.io/v1/"
HELPER_TIMEOUT_S = 30.0


def registry_of(ref: str) -> str:
    """The registry an image reference lives in (`DOCKER_HUB` for Hub images)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _keys(registry: str) -> list[str]:
    """The spellings `docker login` may have filed a registry under."""
    if registry == DOCKER_HUB:
        return [DOCKER_HUB, "index.docker.io", "docker.io", "https://index.docker.io/v1"]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def _from_helper(helper: str, registry: str) -> dict[str, str] | None:
    try:
        proc = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=registry,
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None  # "credentials not found": anonymous
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None
    user, secret = data.get("Username"), data.get("Secret")
    if not isinstance(user, str) or not isinstance(secret, str):
        return None
    if user == "<token>":
        return {"identitytoken": secret, "serveraddress": registry}
    return {"username": user, "password": secret, "serveraddress": registry}


def credentials(registry: str, environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The engine's AuthConfig for `registry`, or None (anonymous)."""
    try:
        config: Any = json.loads(config_path(environ).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    helpers = config.get("credHelpers")
    keys = _keys(registry)
    if isinstance(helpers, dict):
        for key in keys:
            if isinstance(helpers.get(key), str):
                return _from_helper(helpers[key], registry)
    auths = config.get("auths")
    entry: Any = None
    if isinstance(auths, dict):
        entry = next((auths[k] for k in keys if isinstance(auths.get(k), dict)), None)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = _from_helper(store, registry)
        if found is not None:
            return found
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return {"identitytoken": token, "serveraddress": registry}
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if sep:
            return {"username": user, "password": password, "serveraddress": registry}
    return None


def registry_auth(ref: str, environ: dict[str, str] | None = None) -> str | None:
    """The `X-Registry-Auth` header value for pulling or pushing `ref`, or None."""
    found = credentials(registry_of(ref), environ)
    if found is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(found).encode()).decode()


__all__ = ["DOCKER_HUB", "config_path", "credentials", "registry_auth", "registry_of"]
