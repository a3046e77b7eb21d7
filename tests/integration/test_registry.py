"""build -> push -> pull through a local registry that wants credentials.

The registry is Debian's `docker-registry` (distribution 2.8) on a free port of
127.0.0.1 with htpasswd auth; the engine allows plain HTTP to 127.0.0.0/8. The
credentials are in a Docker client config of the test's own (`DOCKER_CONFIG`),
as `docker login` writes them: podctl must find and send them for the push and
for the pull, and a push without them must fail naming the image.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, docker, free_port, wait_for, write_stack

pytestmark = pytest.mark.docker

USER, PASSWORD = "podctl", "registry-pass-1"


def bcrypt_hash(password: str) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

            return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    except (ImportError, AttributeError):
        return None


class Registry:
    def __init__(self, port: int, auth: bool) -> None:
        self.port = port
        self.auth = auth
        self.host = f"127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, str]:
        request = urllib.request.Request(f"http://{self.host}{path}")
        if self.auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    hashed = bcrypt_hash(PASSWORD)
    root = tmp_path / "registry"
    root.mkdir()
    config = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}",
        f"http: {{addr: '127.0.0.1:{port}', secret: podctl-test}}",
    ]
    if hashed is not None:
        (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
        config.append(f"auth: {{htpasswd: {{realm: podctl-test, path: {root / 'htpasswd'}}}}}")
    (root / "config.yml").write_text("\n".join(config) + "\n")
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    reg = Registry(port, auth=hashed is not None)
    try:
        wait_for("the registry to answer", lambda: reg.get("/v2/")[0] == 200, 30)
        yield reg
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def docker_config(tmp_path: Path, registry: Registry, *, with_auth: bool) -> Path:
    """A Docker client config dir, as `docker login` leaves it (or empty)."""
    path = tmp_path / ("docker-login" if with_auth else "docker-anonymous")
    path.mkdir(exist_ok=True)
    auths = {}
    if with_auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        auths[registry.host] = {"auth": token}
    (path / "config.json").write_text(json.dumps({"auths": auths}))
    return path


def test_build_push_pull_round_trip(
    pc: Podctl, tmp_path: Path, stack_name: str, registry: Registry
) -> None:
    image = f"{registry.host}/podctl-test/{stack_name}:1"
    app = tmp_path / "src" / "app"
    app.mkdir(parents=True)
    (app / "Dockerfile").write_text(
        "FROM busybox:1.36\n"
        f'RUN mkdir -p /www && echo "built for {stack_name}" > /www/index.html\n'
        'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    source = write_stack(
        tmp_path / "src",
        f"""\
        name: {stack_name}
        pods:
          web: {{build: ./app, image: "{image}"}}
        """,
    )
    built: list[str] = []
    try:
        # build: the content-hash tag containers run, and the push name.
        proc = pc.cli("build", str(source), check=True)
        assert f"tagged {image}" in proc.stdout
        built = [line.split(" as ")[-1] for line in proc.stdout.splitlines() if " as " in line]
        assert built and built[0].startswith(f"podctl-build/{stack_name}-web:")
        assert docker("image", "inspect", "--format", "{{.Id}}", image)

        if registry.auth:
            # Without credentials the registry refuses the push, and podctl says so.
            pc.env["DOCKER_CONFIG"] = str(docker_config(tmp_path, registry, with_auth=False))
            refused = pc.cli("push", str(source))
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert f"pushing image {image}" in refused.stderr
            assert PASSWORD not in refused.stdout + refused.stderr

        pc.env["DOCKER_CONFIG"] = str(docker_config(tmp_path, registry, with_auth=True))
        pushed = pc.cli("push", str(source), check=True, timeout=300)
        assert f"pushed {image}" in pushed.stdout
        status, tags = registry.get(f"/v2/podctl-test/{stack_name}/tags/list")
        assert status == 200 and json.loads(tags)["tags"] == ["1"]

        # Pull: with no local copy left, `podctl run` pulls the image with the
        # same credentials and serves what the build put in it.
        docker("image", "rm", "-f", image, *built)
        port = free_port()
        runner = write_stack(
            tmp_path / "run",
            f"""\
            name: {stack_name}
            pods:
              web:
                image: "{image}"
                ports: {{http: 8080}}
                readiness: {{http: {{port: http}}, period: 1s}}
            services:
              web: {{pod: web, port: {port}, target: http}}
            """,
        )
        pc.start(runner)
        pc.wait_ready(stack_name, 1, timeout=120)

        def page() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return str(r.read().decode())

        assert wait_for("the pulled image's page", page, 30).strip() == f"built for {stack_name}"
        assert pc.stop() == 0
    finally:
        docker("image", "rm", "-f", image, *built, check=False)
