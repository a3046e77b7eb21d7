"""`develop.watch` in stack files: normalised rules and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

from podctl.spec import load_stack, validate
from podctl.spec.errors import SpecIssue


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def stack(pod_extra: str, watch: str, *, build: bool = True) -> str:
    head = "    build: ./app\n" if build else "    image: busybox:1.36\n"
    return (
        "name: shop\npods:\n  web:\n"
        + head
        + pod_extra
        + "    develop:\n      watch:\n"
        + textwrap.indent(textwrap.dedent(watch).strip("\n"), "        ")
        + "\n"
    )


def tree(tmp_path: Path) -> None:
    (tmp_path / "app" / "site").mkdir(parents=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox:1.36\nCOPY site /www\n")
    (tmp_path / "app" / "site" / "index.html").write_text("hi\n")


def problems(tmp_path: Path, text: str) -> list[SpecIssue]:
    return validate([write(tmp_path, text)], environ={})


def test_rules_are_normalised(tmp_path: Path) -> None:
    tree(tmp_path)
    text = stack(
        "",
        """
        - {path: ./app/site, action: sync, target: /www/, ignore: ["*.tmp"]}
        - {path: app/Dockerfile, action: rebuild}
        - {path: app/site, action: sync+exec, target: /www, exec: {command: "kill -HUP 1"}}
        """,
    )
    pod = load_stack(write(tmp_path, text), environ={}).pods[0]
    assert pod.develop is not None
    sync, rebuild, sync_exec = pod.develop.watch
    assert sync.path == str((tmp_path / "app" / "site").resolve())
    assert (sync.action, sync.target, sync.ignore) == ("sync", "/www", ("*.tmp",))
    assert rebuild.target is None and rebuild.action == "rebuild"
    assert sync_exec.exec is not None and sync_exec.exec.command == ("kill", "-HUP", "1")


def test_develop_is_not_part_of_the_revision(tmp_path: Path) -> None:
    tree(tmp_path)
    a = stack("", "- {path: app/site, action: sync, target: /www}")
    b = stack("", "- {path: app/site, action: sync, target: /srv}")
    rev_a = load_stack(write(tmp_path, a), environ={}).pods[0].revision
    rev_b = load_stack(write(tmp_path, b), environ={}).pods[0].revision
    assert rev_a == rev_b


def test_missing_target_is_located(tmp_path: Path) -> None:
    tree(tmp_path)
    (issue,) = problems(tmp_path, stack("", "- {path: app/site, action: sync}"))
    assert (issue.line, issue.column) == (7, 11)
    assert issue.field == "pods.web.develop.watch[0]"
    assert "needs `target`" in issue.message


def test_relative_target_and_unknown_action(tmp_path: Path) -> None:
    tree(tmp_path)
    found = problems(
        tmp_path,
        stack(
            "",
            """
            - {path: app/site, action: sync, target: www}
            """,
        ),
    )
    assert [i.field for i in found] == ["pods.web.develop.watch[0].target"]
    (bad,) = problems(tmp_path, stack("", "- {path: app/site, action: copy, target: /www}"))
    assert "action" in bad.field and "copy" in bad.message


def test_path_must_exist_and_stay_inside(tmp_path: Path) -> None:
    tree(tmp_path)
    (missing,) = problems(tmp_path, stack("", "- {path: app/nope, action: sync, target: /www}"))
    assert missing.field == "pods.web.develop.watch[0].path"
    assert "does not exist" in missing.message
    (escape,) = problems(tmp_path, stack("", "- {path: ../x, action: sync, target: /www}"))
    assert "escapes the stack directory" in escape.message
    (absolute,) = problems(tmp_path, stack("", "- {path: /etc, action: sync, target: /www}"))
    assert "absolute" in absolute.message


def test_rebuild_needs_build(tmp_path: Path) -> None:
    tree(tmp_path)
    (issue,) = problems(
        tmp_path, stack("", "- {path: app/Dockerfile, action: rebuild}", build=False)
    )
    assert issue.field == "pods.web.develop.watch[0].action"
    assert "needs the pod to have `build:`" in issue.message


def test_read_only_root_needs_a_writable_mount(tmp_path: Path) -> None:
    tree(tmp_path)
    (issue,) = problems(
        tmp_path,
        stack("    read_only: true\n", "- {path: app/site, action: sync, target: /www}"),
    )
    assert issue.field == "pods.web.develop.watch[0].target"
    assert "read-only root filesystem" in issue.message
    # /tmp is the tmpfs a read-only pod gets; a volume works too.
    ok = stack("    read_only: true\n", "- {path: app/site, action: sync, target: /tmp/www}")
    assert problems(tmp_path, ok) == []


def test_exec_and_target_only_where_they_apply(tmp_path: Path) -> None:
    tree(tmp_path)
    found = problems(
        tmp_path,
        stack(
            "",
            """
            - {path: app/site, action: restart, target: /www}
            - {path: app/site, action: sync+exec, target: /www}
            - {path: app/site, action: sync, target: /www, exec: {command: ["true"]}}
            """,
        ),
    )
    messages = [f"{i.field}: {i.message}" for i in found]
    assert len(messages) == 3, messages
    assert "only to sync actions" in messages[0]
    assert "needs `exec" in messages[1]
    assert "applies only to `sync+exec`" in messages[2]
