"""Normalising stack files: defaults, units, references, probes, mounts, services."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from podctl import defaults
from podctl.spec import SpecError, load_stack, validate
from podctl.spec.errors import SpecIssue
from podctl.spec.model import DesiredStack, ExecProbe, HttpProbe, MountSpec, TcpProbe


def write(tmp_path: Path, text: str, name: str = "stack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, text: str, **kw: object) -> DesiredStack:
    kw.setdefault("environ", {})
    return load_stack(write(tmp_path, text), **kw)  # type: ignore[arg-type]


def problems(tmp_path: Path, text: str, **kw: object) -> list[SpecIssue]:
    kw.setdefault("environ", {})
    return validate([write(tmp_path, text)], **kw)  # type: ignore[arg-type]


def one_problem(tmp_path: Path, text: str, **kw: object) -> SpecIssue:
    found = problems(tmp_path, text, **kw)
    assert len(found) == 1, found
    return found[0]


def pod_yaml(body: str, extra: str = "") -> str:
    """A stack with one pod `web` whose fields are `body` (already indented by 4)."""
    return "name: shop\npods:\n  web:\n    image: busybox\n" + body + extra


# ---------------------------------------------------------------- pods


def test_defaults(tmp_path: Path) -> None:
    pod = load(tmp_path, pod_yaml("")).pods[0]
    t = pod.template
    assert t.stop_grace_s == defaults.STOP_GRACE_S
    assert t.pids_limit == defaults.PIDS_LIMIT
    assert (t.nano_cpus, t.memory_bytes) == (0, 0)
    assert (pod.restart, pod.replicas, pod.depends_on) == ("always", 1, ())
    assert (pod.rollout.max_surge, pod.rollout.max_unavailable) == (1, 0)


def test_invalid_pod_name_is_located(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, "name: shop\npods:\n  Web_1:\n    image: busybox\n")
    assert (issue.line, issue.column, issue.field) == (3, 3, "pods.Web_1")
    assert "invalid pod name `Web_1`" in issue.message


def test_invalid_stack_name(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, "name: My Shop\n")
    assert (issue.line, issue.column) == (1, 7)


def test_image_or_build(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, "name: s\npods:\n  web: {replicas: 2}\n")
    assert "a pod needs `image` or `build`" in issue.message


def test_negative_replicas(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, pod_yaml("    replicas: -1\n"))
    assert (issue.line, issue.field) == (5, "pods.web.replicas")


def test_command_string_is_split_like_a_shell(tmp_path: Path) -> None:
    t = load(tmp_path, pod_yaml("    command: sh -c 'echo hi; sleep 1'\n    entrypoint: [tini]\n"))
    assert t.pods[0].template.command == ("sh", "-c", "echo hi; sleep 1")
    assert t.pods[0].template.entrypoint == ("tini",)


def test_unbalanced_quote_in_command(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, pod_yaml("    command: sh -c 'oops\n"))
    assert issue.field == "pods.web.command"


def test_env_values_become_text(tmp_path: Path) -> None:
    t = (
        load(tmp_path, pod_yaml("    env: {B: true, A: 1, C: 0.5, D: off, E: x}\n"))
        .pods[0]
        .template
    )
    assert t.env == (("A", "1"), ("B", "true"), ("C", "0.5"), ("D", "false"), ("E", "x"))


def test_resources(tmp_path: Path) -> None:
    t = load(tmp_path, pod_yaml("    resources: {cpus: 0.25, memory: 64Mi}\n")).pods[0].template
    assert (t.nano_cpus, t.memory_bytes) == (250_000_000, 64 * 2**20)


def test_resources_errors_are_located(tmp_path: Path) -> None:
    found = problems(tmp_path, pod_yaml("    resources:\n      cpus: 0\n      memory: 512m\n"))
    assert [(i.line, i.field) for i in found] == [
        (6, "pods.web.resources.cpus"),
        (7, "pods.web.resources.memory"),
    ]
    assert "did you mean Mi or M?" in found[1].message


def test_memory_below_dockers_minimum(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, pod_yaml("    resources: {memory: 1Mi}\n"))
    assert "6Mi" in issue.message


def test_stop_grace_and_security(tmp_path: Path) -> None:
    text = pod_yaml(
        "    stop_grace: 3s\n    read_only: true\n    cap_drop: [ALL]\n"
        "    cap_add: [NET_BIND_SERVICE]\n    pids_limit: 50\n"
    )
    t = load(tmp_path, text).pods[0].template
    assert t.stop_grace_s == 3.0
    assert t.read_only_rootfs
    assert MountSpec(kind="tmpfs", source="", target="/tmp") in t.mounts
    assert (t.cap_add, t.cap_drop, t.pids_limit) == (("NET_BIND_SERVICE",), ("ALL",), 50)


def test_reserved_labels(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, pod_yaml("    labels: {io.podctl.stack: x}\n"))
    assert issue.field == "pods.web.labels.io.podctl.stack"


def test_build_context(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "web" / "app.sh").write_text("echo 1\n")
    text = "name: shop\npods:\n  web: {build: ./web}\n"
    first = load(tmp_path, text).pods[0]
    assert first.build is not None
    assert first.build.context == str((tmp_path / "web").resolve())
    assert first.template.image == f"podctl-build/shop-web:{first.build.digest[:12]}"
    again = load(tmp_path, text).pods[0]
    assert again.revision == first.revision
    (tmp_path / "web" / "app.sh").write_text("echo 2\n")
    changed = load(tmp_path, text).pods[0]
    assert changed.build is not None
    assert changed.build.digest != first.build.digest
    assert changed.revision != first.revision


def test_build_context_problems(tmp_path: Path) -> None:
    (tmp_path / "nodockerfile").mkdir()
    issue = one_problem(tmp_path, "name: s\npods:\n  web: {build: ./nodockerfile}\n")
    assert "has no Dockerfile" in issue.message
    issue = one_problem(tmp_path, "name: s\npods:\n  web: {build: ../elsewhere}\n")
    assert "escapes the stack directory" in issue.message
    assert (issue.line, issue.field) == (3, "pods.web.build")


# ---------------------------------------------------------------- probes


PROBED = """
name: shop
pods:
  web:
    image: busybox
    ports: {http: 8080}
    readiness: {http: {port: http, path: /ready}, period: 1s}
    liveness: {tcp: {port: 8080}, period: 2s, failure_threshold: 5}
    startup: {exec: [cat, /ok], initial_delay: 500ms, timeout: 2s}
"""


def test_probes_resolve_named_ports_and_take_kubernetes_defaults(tmp_path: Path) -> None:
    t = load(tmp_path, PROBED).pods[0].template
    assert t.readiness is not None and t.liveness is not None and t.startup is not None
    assert t.readiness.check == HttpProbe(port=8080, path="/ready")
    assert t.readiness.period_s == 1.0
    assert t.readiness.timeout_s == defaults.PROBE_TIMEOUT_S
    assert t.readiness.failure_threshold == defaults.PROBE_FAILURE_THRESHOLD
    assert t.liveness.check == TcpProbe(port=8080)
    assert t.liveness.failure_threshold == 5
    assert t.startup.check == ExecProbe(command=("cat", "/ok"))
    assert (t.startup.initial_delay_s, t.startup.timeout_s) == (0.5, 2.0)
    assert t.startup.period_s == defaults.PROBE_PERIOD_S


def test_probe_needs_exactly_one_check(tmp_path: Path) -> None:
    text = PROBED.replace("{tcp: {port: 8080},", "{tcp: {port: 8080}, exec: ['true'],")
    issue = one_problem(tmp_path, text)
    assert (issue.line, issue.field) == (7, "pods.web.liveness")
    assert "exactly one of `http`, `tcp` or `exec`" in issue.message


def test_unknown_named_port(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, PROBED.replace("port: http,", "port: htp,"))
    assert (issue.line, issue.column, issue.field) == (6, 30, "pods.web.readiness.http.port")
    assert issue.message == "pod `web` has no port named `htp` (known: http)"


@pytest.mark.parametrize(
    ("liveness", "field", "message"),
    [
        ("success_threshold: 2", "success_threshold", "must be 1 for a liveness probe"),
        ("failure_threshold: 0", "failure_threshold", "must be 1 or more"),
        ("period: 0s", "period", "must be greater than 0"),
        ("period: fast", "period", "invalid duration `fast`"),
        ("timeout: -1", "timeout", "must not be negative"),
    ],
)
def test_probe_rules(tmp_path: Path, liveness: str, field: str, message: str) -> None:
    text = PROBED.replace("period: 2s, failure_threshold: 5", liveness)
    issue = one_problem(tmp_path, text)
    assert (issue.line, issue.field) == (7, f"pods.web.liveness.{field}")
    assert message in issue.message


def test_readiness_may_have_success_threshold_above_one(tmp_path: Path) -> None:
    text = PROBED.replace("period: 1s}", "period: 1s, success_threshold: 3}")
    t = load(tmp_path, text).pods[0].template
    assert t.readiness is not None and t.readiness.success_threshold == 3


# ---------------------------------------------------------------- depends_on, rollout


def deps(**graph: list[str]) -> str:
    lines = ["name: shop", "pods:"]
    for name, on in graph.items():
        lines.append(f"  {name}: {{image: busybox, depends_on: [{', '.join(on)}]}}")
    return "\n".join(lines) + "\n"


def test_depends_on_unknown_pod(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, deps(web=["dbb"], db=[]))
    assert issue.field == "pods.web.depends_on[0]"
    assert "unknown pod `dbb` (known: db, web)" in issue.message


def test_dependency_cycle_names_the_cycle(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, deps(a=["b"], b=["c"], c=["a"], d=["a"]))
    assert issue.message == "dependency cycle: a -> b -> c -> a"
    assert (issue.line, issue.field) == (3, "pods.a.depends_on")


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, deps(a=["a"]))
    assert issue.message == "dependency cycle: a -> a"


def test_acyclic_dependencies(tmp_path: Path) -> None:
    stack = load(tmp_path, deps(web=["db", "cache"], cache=["db"], db=[]))
    pod = stack.pod("web")
    assert pod is not None and pod.depends_on == ("db", "cache")


def test_rollout_percentages(tmp_path: Path) -> None:
    pod = load(tmp_path, pod_yaml('    rollout: {max_surge: "25%", max_unavailable: 1}\n')).pods[0]
    assert (pod.rollout.max_surge, pod.rollout.max_unavailable) == ("25%", 1)


@pytest.mark.parametrize(
    ("rollout", "field", "message"),
    [
        ("{max_surge: 0, max_unavailable: 0}", "pods.web.rollout", "cannot both be 0"),
        ('{max_surge: "0%"}', "pods.web.rollout", "cannot both be 0"),
        ('{max_surge: "x"}', "pods.web.rollout.max_surge", "a count or a percentage"),
        ('{max_surge: "150%"}', "pods.web.rollout.max_surge", "a count or a percentage"),
        ("{max_unavailable: -1}", "pods.web.rollout.max_unavailable", "0 or more"),
    ],
)
def test_rollout_rules(tmp_path: Path, rollout: str, field: str, message: str) -> None:
    issue = one_problem(tmp_path, pod_yaml(f"    rollout: {rollout}\n"))
    assert (issue.line, issue.field) == (5, field)
    assert message in issue.message


# ---------------------------------------------------------------- mounts, configs, secrets


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "tls.key").write_text("KEYDATA")
    (tmp_path / "data").mkdir()
    return tmp_path


STORAGE = """
name: shop
pods:
  web:
    image: busybox
    mounts:
      - {config: site, path: /www/index.html}
      - {secret: tls-key}
      - {secret: api-key, path: /etc/key, mode: "0440", uid: 100, gid: 101}
      - {volume: data, path: /data}
      - {bind: ./data, path: /host, read_only: true}
configs: {site: {file: ./site/index.html}, inline: {data: "hello"}}
secrets: {tls-key: {file: ./secrets/tls.key}, api-key: {env: API_KEY}}
volumes: {data: {driver: local, options: {type: tmpfs}}}
"""


def test_storage_normalises(files: Path) -> None:
    stack = load(files, STORAGE, environ={"API_KEY": "k3y-value"})
    mounts = {m.target: m for m in stack.pods[0].template.mounts}
    assert mounts["/www/index.html"] == MountSpec(
        kind="config", source="site", target="/www/index.html", read_only=True, mode=0o444
    )
    assert mounts["/run/secrets/tls-key"].mode == 0o400
    assert mounts["/run/secrets/tls-key"].read_only
    assert (mounts["/etc/key"].mode, mounts["/etc/key"].uid, mounts["/etc/key"].gid) == (
        0o440,
        100,
        101,
    )
    assert mounts["/data"].kind == "volume" and not mounts["/data"].read_only
    assert mounts["/host"].source == str((files / "data").resolve())
    configs = {c.name: c for c in stack.configs}
    assert configs["site"].file == str((files / "site" / "index.html").resolve())
    assert configs["inline"].data == b"hello"
    assert len(configs["site"].digest) == 12
    secrets = {s.name: s for s in stack.secrets}
    assert secrets["api-key"].env == "API_KEY"
    assert secrets["tls-key"].file == str((files / "secrets" / "tls.key").resolve())
    (volume,) = stack.volumes
    assert (volume.docker_name, volume.driver, volume.options) == (
        "shop_data",
        "local",
        (("type", "tmpfs"),),
    )


def test_unknown_storage_names(files: Path) -> None:
    text = STORAGE.replace("{config: site,", "{config: sitee,").replace(
        "{volume: data,", "{volume: dta,"
    )
    found = problems(files, text, environ={"API_KEY": "k3y-value"})
    assert [(i.line, i.field) for i in found] == [
        (6, "pods.web.mounts[0].config"),
        (9, "pods.web.mounts[3].volume"),
    ]
    assert "unknown config `sitee` (known: inline, site)" in found[0].message


def test_mount_needs_exactly_one_source(files: Path) -> None:
    text = pod_yaml("    mounts:\n      - {volume: data, bind: ./data, path: /x}\n")
    issue = one_problem(files, text + "volumes: {data: {}}\n")
    assert (issue.line, issue.field) == (6, "pods.web.mounts[0]")


def test_two_mounts_on_one_path(files: Path) -> None:
    text = STORAGE.replace("path: /host", "path: /data/")
    issue = one_problem(files, text, environ={"API_KEY": "k3y-value"})
    assert (issue.line, issue.field) == (10, "pods.web.mounts[4].path")
    assert "two mounts on `/data`" in issue.message


def test_relative_target_path(files: Path) -> None:
    issue = one_problem(
        files, STORAGE.replace("path: /data}", "path: data}"), environ={"API_KEY": "x"}
    )
    assert "must be an absolute path" in issue.message


def test_bind_absolute_needs_allow_host_paths(files: Path) -> None:
    text = STORAGE.replace("bind: ./data", f"bind: {files / 'data'}")
    issue = one_problem(files, text, environ={"API_KEY": "x"})
    assert (issue.line, issue.field) == (10, "pods.web.mounts[4].bind")
    assert "allow_host_paths" in issue.message
    stack = load(files, text + "allow_host_paths: true\n", environ={"API_KEY": "x"})
    assert any(m.kind == "bind" for m in stack.pods[0].template.mounts)


def test_bind_escape_and_missing(files: Path) -> None:
    issue = one_problem(
        files, STORAGE.replace("bind: ./data", "bind: ../"), environ={"API_KEY": "x"}
    )
    assert "escapes the stack directory" in issue.message
    issue = one_problem(
        files, STORAGE.replace("bind: ./data", "bind: ./nope"), environ={"API_KEY": "x"}
    )
    assert "does not exist" in issue.message


def test_config_file_missing(files: Path) -> None:
    issue = one_problem(
        files, STORAGE.replace("./site/index.html", "./site/nope.html"), environ={"API_KEY": "x"}
    )
    assert (issue.line, issue.field) == (11, "configs.site.file")
    assert "does not exist" in issue.message


def test_secret_file_symlink_escape(files: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "host.key"
    outside.write_text("HOST")
    (files / "secrets" / "tls.key").unlink()
    (files / "secrets" / "tls.key").symlink_to(outside)
    issue = one_problem(files, STORAGE, environ={"API_KEY": "x"})
    assert (issue.line, issue.field) == (12, "secrets.tls-key.file")
    assert "through a symlink" in issue.message


def test_secret_env_must_be_set_and_is_named(files: Path) -> None:
    issue = one_problem(files, STORAGE, environ={})
    assert (issue.line, issue.field) == (12, "secrets.api-key.env")
    assert "`API_KEY`" in issue.message and "not set" in issue.message


def test_mode_only_for_configs_and_secrets(files: Path) -> None:
    text = STORAGE.replace(
        "{volume: data, path: /data}", '{volume: data, path: /data, mode: "0600"}'
    )
    issue = one_problem(files, text, environ={"API_KEY": "x"})
    assert issue.field == "pods.web.mounts[3].mode"


def test_bad_mode(files: Path) -> None:
    issue = one_problem(files, STORAGE.replace('"0440"', '"0999"'), environ={"API_KEY": "x"})
    assert issue.field == "pods.web.mounts[2].mode"


def test_env_from_config_and_secret(files: Path) -> None:
    text = STORAGE.replace(
        "    mounts:",
        "    env: {SITE: {config: site}, KEY: {secret: api-key}, X: {secret: nope}}\n    mounts:",
    )
    issue = one_problem(files, text, environ={"API_KEY": "x"})
    assert (issue.line, issue.field) == (5, "pods.web.env.X.secret")
    ok = load(files, text.replace(", X: {secret: nope}", ""), environ={"API_KEY": "x"})
    assert [(e.name, e.kind, e.source) for e in ok.pods[0].template.env_from] == [
        ("KEY", "secret", "api-key"),
        ("SITE", "config", "site"),
    ]


def test_config_needs_file_or_data(files: Path) -> None:
    issue = one_problem(files, "name: s\nconfigs: {c: {}}\n")
    assert "exactly one of `file` or `data`" in issue.message


# ---------------------------------------------------------------- secrets never leak


CANARY = "CANARY-5f0c9e1d-never-print-me"


def test_secret_value_is_never_in_errors_or_structs(files: Path) -> None:
    (files / "secrets" / "tls.key").write_text(CANARY + "\n")
    env = {"API_KEY": CANARY, "OTHER": CANARY}
    # Valid: the value is in no Struct.
    stack = load(files, STORAGE, environ=env)
    assert CANARY not in repr(stack)
    # Broken in many ways, including a user interpolating the secret's variable into a
    # field whose parse error would echo the text.
    broken = (
        STORAGE.replace("image: busybox", "image: busybox\n    stop_grace: ${API_KEY}").replace(
            "{volume: data,", "{volume: nope,"
        )
        + "services: {web: {pod: web, target: '${OTHER}'}}\n"
    )
    with pytest.raises(SpecError) as info:
        load_stack(write(files, broken), environ=env)
    text = str(info.value) + repr(info.value.issues)
    assert CANARY not in text
    assert "stop_grace" in text and "<secret " in text


# ---------------------------------------------------------------- services


SERVICES = """
name: shop
pods:
  web: {image: busybox, ports: {http: 8080}}
services:
  web: {pod: web, port: 18080, target: http}
  internal: {pod: web, target: 9000}
"""


def test_services(tmp_path: Path) -> None:
    stack = load(tmp_path, SERVICES)
    web, internal = stack.services
    assert (web.pod, web.port, web.target_port, web.bind) == ("web", 18080, 8080, "127.0.0.1")
    assert (internal.port, internal.target_port) == (None, 9000)


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "{pod: web, port",
            "{pod: wbe, port",
            "services.web.pod",
            "unknown pod `wbe` (known: web)",
        ),
        ("target: http", "target: https", "services.web.target", "no port named `https`"),
        ("port: 18080", "port: 70000", "services.web.port", "between 1 and 65535"),
        ("port: 18080", "port: 18080, bind: localhost", "services.web.bind", "not an IP address"),
        ("target: 9000}", "target: 9000, port: 18080}", "services.internal.port", "also used"),
    ],
)
def test_service_rules(tmp_path: Path, old: str, new: str, field: str, message: str) -> None:
    issue = one_problem(tmp_path, SERVICES.replace(old, new))
    assert issue.field == field
    assert message in issue.message


def test_privileged_port_without_root(tmp_path: Path) -> None:
    text = SERVICES.replace("port: 18080", "port: 80")
    issue = one_problem(tmp_path, text, port_start=1024)
    assert (issue.line, issue.column, issue.field) == (5, 25, "services.web.port")
    assert "privileged" in issue.message
    assert load(tmp_path, text, port_start=0).services[0].port == 80


# ---------------------------------------------------------------- revision


REV = """
name: shop
pods:
  web:
    image: busybox:1.36
    command: [httpd, -f]
    env: {A: "1", B: "2", C: "3"}
    replicas: 2
    mounts: [{config: site, path: /www/index.html}]
  other:
    image: busybox:1.36
configs: {site: {file: ./index.html}}
"""


def revisions(tmp_path: Path, text: str) -> dict[str, str]:
    return {p.name: p.revision for p in load(tmp_path, text).pods}


def test_revision_is_stable_and_ignores_scheduling_fields(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("v1")
    base = revisions(tmp_path, REV)
    assert len(base["web"]) == 12
    assert revisions(tmp_path, REV) == base
    reordered = REV.replace('{A: "1", B: "2", C: "3"}', '{C: "3", A: "1", B: "2"}')
    assert revisions(tmp_path, reordered) == base
    for old, new in [
        ("replicas: 2", "replicas: 5"),
        ("replicas: 2", "replicas: 2\n    depends_on: [other]\n    restart: never"),
        ("replicas: 2", 'replicas: 2\n    rollout: {max_surge: "50%", max_unavailable: 1}'),
    ]:
        assert revisions(tmp_path, REV.replace(old, new)) == base, new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("image: busybox:1.36\n    command", "image: busybox:1.35\n    command"),
        ("[httpd, -f]", "[httpd, -f, -v]"),
        ('C: "3"', 'C: "4"'),
        ("path: /www/index.html", "path: /www/other.html"),
    ],
)
def test_revision_changes_with_the_template(tmp_path: Path, old: str, new: str) -> None:
    (tmp_path / "index.html").write_text("v1")
    base = revisions(tmp_path, REV)
    changed = revisions(tmp_path, REV.replace(old, new))
    assert changed["web"] != base["web"]
    assert changed["other"] == base["other"]


def test_revision_changes_with_config_content_only_for_its_users(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("v1")
    base = revisions(tmp_path, REV)
    (tmp_path / "index.html").write_text("v2")
    changed = revisions(tmp_path, REV)
    assert changed["web"] != base["web"]
    assert changed["other"] == base["other"]


def test_revision_changes_with_secret_env_value(tmp_path: Path) -> None:
    text = pod_yaml("    env: {K: {secret: k}}\n", "secrets: {k: {env: K}}\n")
    one = load(tmp_path, text, environ={"K": "one"}).pods[0].revision
    two = load(tmp_path, text, environ={"K": "two"}).pods[0].revision
    assert one != two
