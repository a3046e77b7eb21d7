"""Log formatting for the journal: one line per event, <N> priorities, JSON lines."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from podctl.host import journal


def record(level: int, msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("podctl.reconcile", level, __file__, 1, msg, args, exc_info)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def journal_env(path: Path) -> dict[str, str]:
    st = os.stat(path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_text_to_a_file_has_a_time_no_colour_and_one_line(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as stream:
        fmt = journal.make_formatter("text", stream, {})
        line = fmt.format(record(logging.WARNING, "pod %s crashed\nexit %d", "web-0", 137))
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith("WARNING podctl.reconcile: pod web-0 crashed\\nexit 137")
    assert line[:4].isdigit()  # starts with the time


def test_text_on_a_terminal_is_coloured_unless_no_color() -> None:
    tty = FakeTty()
    line = journal.make_formatter("text", tty, {}).format(record(logging.ERROR, "x"))
    assert "\x1b[31mERROR\x1b[0m" in line
    plain = journal.make_formatter("text", tty, {"NO_COLOR": "1"}).format(
        record(logging.ERROR, "x")
    )
    assert "\x1b" not in plain


def test_journal_stream_gets_priority_prefixes_and_no_time(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        fmt = journal.make_formatter("text", stream, journal_env(path))
        assert fmt.format(record(logging.ERROR, "engine unavailable")) == (
            "<3>ERROR podctl.reconcile: engine unavailable"
        )
        assert fmt.format(record(logging.WARNING, "w")).startswith("<4>")
        assert fmt.format(record(logging.INFO, "i")).startswith("<6>")
        assert fmt.format(record(logging.DEBUG, "d")).startswith("<7>")
        assert fmt.format(record(logging.CRITICAL, "c")).startswith("<2>")
        line = fmt.format(record(logging.ERROR, "failed", exc=True))
    assert "\n" not in line
    assert line.startswith("<3>ERROR podctl.reconcile: failed\\nTraceback")
    assert "ValueError: boom\\nsecond line" in line


def test_an_inherited_journal_stream_that_is_not_our_stderr_is_ignored(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("")
    with open(tmp_path / "log", "w") as stream:
        assert not journal.journal_stream_matches(stream, journal_env(other))
        assert not journal.journal_stream_matches(stream, {"JOURNAL_STREAM": "garbage"})
        line = journal.make_formatter("text", stream, journal_env(other)).format(
            record(logging.ERROR, "x")
        )
    assert not line.startswith("<")


def test_json_is_one_object_per_line(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as stream:
        fmt = journal.make_formatter("json", stream, {})
        line = fmt.format(record(logging.ERROR, 'pod %s: "bad"\nnext', "web-0", exc=True))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "error"
    assert doc["logger"] == "podctl.reconcile"
    assert doc["message"] == 'pod web-0: "bad"\nnext'
    assert doc["time"].endswith("Z") and "T" in doc["time"]
    assert "ValueError: boom" in doc["exc"]


def test_json_to_the_journal_has_the_prefix_before_the_object(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        line = journal.make_formatter("json", stream, journal_env(path)).format(
            record(logging.WARNING, "w")
        )
    assert line.startswith("<4>{")
    assert json.loads(line[3:])["message"] == "w"


def test_handler_writes_lines_to_its_stream() -> None:
    stream = io.StringIO()
    handler = journal.make_handler("json", stream, {})
    logger = logging.getLogger("podctl.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("one\ntwo")
        logger.info("three")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [json.loads(x)["message"] for x in lines] == ["one\ntwo", "three"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        journal.make_formatter("xml", io.StringIO(), {})  # type: ignore[arg-type]
