"""CLI polish that came with dev mode: ages, local times, --version, empty lists."""

from __future__ import annotations

from datetime import datetime

from typer.testing import CliRunner

from podctl.cli import app
from podctl.cli.output import age, local_times


def test_ages_like_kubectl() -> None:
    assert [age(s) for s in (0, 42, 192, 18180, 187200)] == ["0s", "42s", "3m12s", "5h3m", "2d4h"]


def test_describe_times_are_local_iso() -> None:
    t = 1_700_000_000.5
    out = local_times({"started_at": t, "restarts": 3, "events": [{"time": t, "reason": "X"}]})
    assert out["started_at"] == datetime.fromtimestamp(t).astimezone().isoformat("T", "seconds")
    assert out["events"][0]["time"] == out["started_at"]
    assert out["restarts"] == 3
    assert local_times({"started_at": None}) == {"started_at": None}


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("podctl ")
