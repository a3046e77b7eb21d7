"""Control characters from stack files never reach the terminal raw.

An ESC in a key, a value or a file name would otherwise be written straight to
the user's terminal by `podctl validate`, the run log and `podctl events`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from podctl.api.schema import PodRow
from podctl.cli import output
from podctl.spec import SpecError, validate
from podctl.spec.errors import SpecIssue, escape_control

ESC = "\x1b"


def test_escape_control_writes_controls_as_escapes() -> None:
    text = f"a{ESC}[31mred\x07 bell\x00\x7f\x9b\nnext\ttab\u202eevil"
    assert escape_control(text) == "a\\x1b[31mred\\x07 bell\\x00\\x7f\\x9b\\nnext\\ttab\\u202eevil"


def test_escape_control_keeps_ordinary_text() -> None:
    text = "caf\u00e9 \u2713 \u65e5\u672c pods.web[0] 'quoted' \\ back"
    assert escape_control(text) == text


def test_a_spec_issue_renders_on_one_line_without_raw_controls() -> None:
    issue = SpecIssue(
        file=f"s{ESC}.yaml",
        line=3,
        column=5,
        field=f"pods.w{ESC}b",
        message=f"unknown field `x{ESC}]52;c;aGk=\x07`\nsecond line",
    )
    text = str(issue)
    assert ESC not in text and "\x07" not in text and "\n" not in text
    assert text == (
        "s\\x1b.yaml:3:5: pods.w\\x1bb: unknown field `x\\x1b]52;c;aGk=\\x07`\\nsecond line"
    )
    # SpecError's text (used in logs and the reload event) is made of the same lines.
    assert str(SpecError([issue, issue])).splitlines() == [text, text]


def test_validate_output_escapes_a_hostile_key(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text('name: shop\npods:\n  web:\n    image: busybox\n    "\\e[2J\\e[31mimg": x\n')
    (issue,) = validate([path], environ={})
    assert issue.field == f"pods.web.{ESC}[2J{ESC}[31mimg"  # the data itself is exact
    text = str(issue)
    assert ESC not in text
    assert text.startswith(
        f"{path}:5:5: pods.web.\\x1b[2J\\x1b[31mimg: unknown field `\\x1b[2J\\x1b[31mimg`"
    )


def test_err_escapes_controls_but_keeps_line_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    output.err(f"error: bad {ESC}[31mname\nsecond line\n")
    assert capsys.readouterr().err == "error: bad \\x1b[31mname\nsecond line\n"


def pod_row(name: str, reason: str) -> PodRow:
    return PodRow(
        stack="shop",
        pod="web",
        name=name,
        container_id="c1",
        phase="Running",
        ready=True,
        restarts=0,
        revision="r1",
        image="busybox",
        reason=reason,
        replica=0,
        ip=None,
        exit_code=None,
        started_at=None,
    )


def test_table_output_escapes_controls_and_ignores_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = pod_row(f"web{ESC}[2J", "[bold]not markup[/bold] \x07")
    output.print_data([row], output.Format.table, [("NAME", "name"), ("REASON", "reason")])
    out = capsys.readouterr().out
    assert ESC not in out and "\x07" not in out
    assert "web\\x1b[2J" in out
    assert "[bold]not markup[/bold] \\x07" in out


@pytest.mark.parametrize("fmt", [output.Format.json, output.Format.yaml])
def test_json_and_yaml_output_escape_controls_and_round_trip(
    capsys: pytest.CaptureFixture[str], fmt: output.Format
) -> None:
    name = f"web{ESC}[2J\x07\x7f\x9b\u202e"
    output.print_data([pod_row(name, "")], fmt, [])
    out = capsys.readouterr().out
    for ch in (ESC, "\x07", "\x7f", "\x9b", "\u202e"):
        assert ch not in out
    data = json.loads(out) if fmt is output.Format.json else yaml.safe_load(out)
    assert data[0]["name"] == name


def test_safe_is_what_the_events_table_uses() -> None:
    line = f"12:00:00  shop       web-0   Invalid   bad {ESC}[31mvalue"
    assert output.safe(line) == "12:00:00  shop       web-0   Invalid   bad \\x1b[31mvalue"
