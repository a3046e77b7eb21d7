"""Real published manifests (tests/corpus/kubernetes): a report or a clean error, never a
traceback. Sources and licences are in the corpus's README."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from podctl.cli import app

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "kubernetes"
FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 90
    assert (CORPUS / "README.md").is_file()


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_validate_report_gives_a_report_or_a_clean_error(path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--report", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        # A clean error names FILE:LINE:COL.
        assert f"{path}:" in result.output
    else:
        assert "is valid" in result.output or "not carried over" in result.output
