"""Secret values never reach text podctl prints: redaction and the log filter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from podctl.spec.digest import content_digest
from podctl.storage.redact import Redactor, install_log_redaction, secret_ref

CANARY = "canary-7f3a9c1e-do-not-leak"


def test_secret_ref_shows_name_and_short_digest() -> None:
    d = content_digest(CANARY.encode())
    assert secret_ref("api-key", d) == f"<secret:api-key sha256:{d[7:15]}>"
    assert secret_ref("api-key", d[7:]) == secret_ref("api-key", d)


def test_every_occurrence_is_replaced() -> None:
    r = Redactor({"api-key": CANARY})
    ref = secret_ref("api-key", content_digest(CANARY.encode()))
    text = f"a={CANARY} b={CANARY}{CANARY} end"
    out = r.redact(text)
    assert CANARY not in out
    assert out == f"a={ref} b={ref}{ref} end"


def test_forms_a_value_takes_in_text_are_replaced() -> None:
    value = 'line1\nline"2\n'
    r = Redactor({"tls": value.encode()})
    for text in (
        value,
        value.strip(),
        json.dumps({"v": value}),
        repr(value),
        f"x {value.rstrip()} y",
    ):
        out = r.redact(text)
        assert "line1" not in out, text
        assert "<secret:tls sha256:" in out


def test_longest_value_wins_and_bytes_are_redacted() -> None:
    r = Redactor({"short": "abcd", "long": "abcdefgh"})
    assert "<secret:long " in r.redact("xxabcdefghxx")
    assert b"abcd" not in r.redact_bytes(b"log: abcd and abcdefgh\n")


def test_given_digest_is_used_and_blank_values_are_ignored() -> None:
    r = Redactor({"k": CANARY, "blank": "  "}, digests={"k": "sha256:" + "ab" * 32})
    assert r.redact(CANARY) == "<secret:k sha256:abababab>"
    assert r.redact("a  b") == "a  b"


def test_update_swaps_the_known_values() -> None:
    r = Redactor()
    assert not r
    assert r.redact(CANARY) == CANARY
    r.update({"k": CANARY})
    assert CANARY not in r.redact(CANARY)
    assert r.contains_secret(f"x{CANARY}x")
    r.update({})
    assert r.redact(CANARY) == CANARY


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("podctl.test.redact")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)
    logger.propagate = True


def test_log_filter_redacts_messages_args_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    r = Redactor({"api-key": CANARY})
    install_log_redaction(r, [handler])
    child = logging.getLogger("podctl.test.redact.child")  # records propagate to the handler
    logger.info("inline %s", CANARY)
    child.warning(f"f-string {CANARY}")
    logger.info("dict %r", {"env": {"API_KEY": CANARY}})
    try:
        raise RuntimeError(f"boom {CANARY}")
    except RuntimeError:
        logger.exception("failed")
    out = stream.getvalue()
    assert CANARY not in out
    assert out.count("<secret:api-key sha256:") == 4
    assert "RuntimeError" in out


def test_install_defaults_to_root_handlers() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        flt = install_log_redaction(Redactor({"k": CANARY}))
        assert flt in handler.filters
    finally:
        root.removeHandler(handler)
