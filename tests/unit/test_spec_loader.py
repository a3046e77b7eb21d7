"""Loading stack files: every problem named at FILE:LINE:COL with its field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from podctl.spec import SpecError, load_stack, validate
from podctl.spec.errors import SpecIssue
from podctl.spec.loader import load_file


def write(tmp_path: Path, text: str, name: str = "stack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def issues_of(path: Path, **kw: object) -> list[SpecIssue]:
    return load_file(path, **kw).issues  # type: ignore[arg-type]


def where(issue: SpecIssue) -> tuple[int, int, str]:
    return (issue.line, issue.column, issue.field)


MINIMAL = """
name: shop
pods:
  web:
    image: busybox:1.36
"""


def test_minimal_yaml_loads(tmp_path: Path) -> None:
    stack = load_stack(write(tmp_path, MINIMAL), environ={})
    assert stack.name == "shop"
    assert stack.network == "podctl_shop"
    (pod,) = stack.pods
    assert (pod.name, pod.replicas, pod.template.image) == ("web", 1, "busybox:1.36")
    assert stack.source == str(tmp_path / "stack.yaml")


def test_directory_means_the_stack_file_inside(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "podctl.yaml")
    assert load_stack(tmp_path, environ={}).name == "shop"


def test_unknown_field_says_did_you_mean_at_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        pods:
          web:
            imgae: busybox
        """,
    )
    found = issues_of(path)
    assert len(found) == 1
    assert where(found[0]) == (4, 5, "pods.web.imgae")
    assert found[0].message == "unknown field `imgae`; did you mean `image`?"
    assert str(found[0]) == (
        f"{path}:4:5: pods.web.imgae: unknown field `imgae`; did you mean `image`?"
    )


def test_unknown_field_without_a_close_match_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "name: shop\nvolumes: {data: {zzz: 1}}\n")
    (issue,) = issues_of(path)
    assert "unknown field `zzz` (expected one of: driver, options)" in issue.message


def test_type_error_points_at_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        pods:
          web:
            image: busybox
            replicas: lots
        """,
    )
    (issue,) = issues_of(path)
    assert where(issue) == (5, 15, "pods.web.replicas")
    assert issue.message == "expected int, got str"


def test_errors_in_several_pods_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        pods:
          a:
            image: busybox
            replicas: x
          b:
            image: busybox
            restart: sometimes
          c:
            imag: busybox
            mounts:
              - {config: site, pth: /x}
        services:
          web: {port: 80}
        """,
    )
    got = [where(i) for i in issues_of(path)]
    assert (5, 15, "pods.a.replicas") in got
    assert (8, 14, "pods.b.restart") in got
    assert (10, 5, "pods.c.imag") in got
    assert (12, 24, "pods.c.mounts[0].pth") in got
    assert sum(1 for w in got if w[2] == "services.web") == 2  # pod and target missing


def test_list_item_type_error_names_the_index(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        pods:
          web:
            image: busybox
            command: [echo, [nested]]
        """,
    )
    (issue,) = issues_of(path)
    assert where(issue) == (5, 21, "pods.web.command[1]")
    assert issue.message == "expected str, got array"


def test_missing_required_field(tmp_path: Path) -> None:
    path = write(tmp_path, "pods: {}\n")
    (issue,) = issues_of(path)
    assert issue.message == "missing required field `name`"


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    path = write(tmp_path, "name: shop\npods:\n  web: [unclosed\n")
    (issue,) = issues_of(path)
    assert issue.message.startswith("invalid YAML")
    assert issue.line >= 3


def test_duplicate_yaml_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "name: shop\nname: other\n")
    (issue,) = issues_of(path)
    assert where(issue) == (2, 1, "name")
    assert "duplicate key `name`" in issue.message


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    assert "empty" in issues_of(write(tmp_path, "", "a.yaml"))[0].message
    assert "mapping" in issues_of(write(tmp_path, "- a\n", "b.yaml"))[0].message


def test_missing_file(tmp_path: Path) -> None:
    (issue,) = validate([tmp_path / "nope.yaml"])
    assert "cannot read stack file" in issue.message


# ---------------------------------------------------------------- variables


VARS = """
name: shop
variables: {n: 2, tag: "1.36"}
pods:
  web:
    image: busybox:${tag}
    replicas: ${n}
"""


def test_variables_default_from_the_file(tmp_path: Path) -> None:
    stack = load_stack(write(tmp_path, VARS), environ={})
    assert stack.pods[0].replicas == 2
    assert stack.pods[0].template.image == "busybox:1.36"


def test_environment_overrides_variables_and_set_overrides_environment(tmp_path: Path) -> None:
    path = write(tmp_path, VARS)
    env = {"n": "4", "tag": "1.35"}
    stack = load_stack(path, environ=env)
    assert (stack.pods[0].replicas, stack.pods[0].template.image) == (4, "busybox:1.35")
    stack = load_stack(path, overrides={"n": "7"}, environ=env)
    assert (stack.pods[0].replicas, stack.pods[0].template.image) == (7, "busybox:1.35")


def test_typed_variable_into_a_text_field_becomes_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        variables: {tag: 1.36, user: 1000}
        pods:
          web: {image: "${tag}", user: "${user}", replicas: 1}
        """,
    )
    stack = load_stack(path, environ={})
    assert stack.pods[0].template.image == "1.36"
    assert stack.pods[0].template.user == "1000"


def test_missing_variable_names_file_line_col(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        pods:
          web:
            image: busybox:${TAG}
        """,
    )
    with pytest.raises(SpecError) as info:
        load_stack(path, environ={})
    (issue,) = info.value.issues
    assert where(issue) == (4, 12, "pods.web.image")
    assert "variable `TAG` is not set" in issue.message
    assert str(info.value).startswith(f"{path}:4:12: pods.web.image: variable `TAG`")


def test_non_numeric_variable_for_replicas_is_a_type_error(tmp_path: Path) -> None:
    path = write(tmp_path, VARS)
    (issue,) = validate([path], overrides={"n": "many"}, environ={})
    assert where(issue) == (6, 15, "pods.web.replicas")


# ---------------------------------------------------------------- TOML


TOML = """
name = "shop"

[variables]
n = 2

[pods.web]
image = "busybox:1.36"
replicas = "${n}"
env = { MODE = "prod", DEBUG = false }
ports.http = 8080

[[pods.web.mounts]]
volume = "data"
path = "/data"

[volumes.data]
"""


def test_toml_loads_like_yaml(tmp_path: Path) -> None:
    stack = load_stack(write(tmp_path, TOML, "stack.toml"), environ={})
    (pod,) = stack.pods
    assert pod.replicas == 2
    assert dict(pod.template.env) == {"MODE": "prod", "DEBUG": "false"}
    assert dict(pod.template.ports) == {"http": 8080}
    assert pod.template.mounts[0].target == "/data"


def test_toml_errors_have_line_numbers(tmp_path: Path) -> None:
    text = TOML.replace('image = "busybox:1.36"', 'imgae = "busybox:1.36"').replace(
        'path = "/data"', "pth = 1"
    )
    found = issues_of(write(tmp_path, text, "stack.toml"))
    got = {i.field: (i.line, i.column) for i in found}
    assert got["pods.web.imgae"] == (7, 1)
    assert got["pods.web.mounts[0].pth"] == (14, 1)
    assert any("did you mean `image`" in i.message for i in found)


def test_toml_inline_table_positions(tmp_path: Path) -> None:
    text = TOML.replace("DEBUG = false", "DEBUG = [1]")
    (issue,) = issues_of(write(tmp_path, text, "stack.toml"))
    # A list or table is pointed at by its key; a scalar by its value.
    assert where(issue) == (9, 24, "pods.web.env.DEBUG")


def test_toml_syntax_error_has_a_position(tmp_path: Path) -> None:
    (issue,) = issues_of(write(tmp_path, 'name = "shop"\npods = [\n', "stack.toml"))
    assert issue.message.startswith("invalid TOML")
    assert issue.line >= 2


def test_toml_missing_variable(tmp_path: Path) -> None:
    text = TOML.replace('replicas = "${n}"', 'replicas = "${nope}"')
    (issue,) = issues_of(write(tmp_path, text, "stack.toml"), environ={})
    assert where(issue) == (8, 12, "pods.web.replicas")


def test_typed_variable_inside_a_command_list_becomes_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        variables: {secs: 5}
        pods:
          web: {image: busybox, command: [sleep, "${secs}"]}
        """,
    )
    assert load_stack(path, environ={}).pods[0].template.command == ("sleep", "5")


def test_top_level_x_keys_hold_anchors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: shop
        x-common: &common {image: busybox, restart: on-failure}
        pods:
          a: *common
          b:
            <<: *common
            replicas: 2
        """,
    )
    a, b = load_stack(path, environ={}).pods
    assert (a.restart, b.restart, b.replicas) == ("on-failure", "on-failure", 2)


def test_toml_array_of_tables_positions(tmp_path: Path) -> None:
    text = TOML + '\n[[pods.web.mounts]]\nvolume = "data"\npath = 5\n\n[pods.web.readiness]\n'
    text += 'period = "1x"\ntcp = { port = "http" }\n'
    found = issues_of(write(tmp_path, text, "stack.toml"))
    got = {i.field: (i.line, i.column) for i in found}
    assert got == {"pods.web.mounts[1].path": (20, 8)}
    # The duration is only parsed after the schema check passes.
    found = validate([write(tmp_path, text.replace("path = 5", 'path = "/d"'), "s2.toml")])
    assert [(i.field, i.line, i.column) for i in found] == [("pods.web.readiness.period", 23, 10)]
