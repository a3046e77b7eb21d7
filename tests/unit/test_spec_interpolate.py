"""`${VAR}` interpolation: precedence, typing, escapes, missing variables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podctl.spec.interpolate import (
    InterpolationError,
    Variables,
    interpolate,
    interpolate_string,
)


def vars_(
    overrides: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
    defaults: dict[str, str | int | float | bool] | None = None,
) -> Variables:
    return Variables(overrides or {}, environ or {}, defaults or {})


def test_precedence_set_over_environment_over_variables() -> None:
    v = vars_({"a": "set"}, {"a": "env", "b": "env"}, {"a": "file", "b": "file", "c": "file"})
    assert interpolate_string("${a}/${b}/${c}", v) == "set/env/file"


def test_whole_scalar_keeps_the_variable_type() -> None:
    v = vars_(defaults={"n": 3, "on": True, "f": 0.5})
    assert interpolate_string("${n}", v) == 3
    assert interpolate_string("${on}", v) is True
    assert interpolate_string("${f}", v) == 0.5
    # Embedded in text, a value is text; booleans read as YAML would write them.
    assert interpolate_string("x${n}-${on}", v) == "x3-true"


def test_default_applies_when_unset_or_empty() -> None:
    v = vars_(environ={"EMPTY": ""})
    assert interpolate_string("${NOPE:-1.36}", v) == "1.36"
    assert interpolate_string("busybox:${NOPE:-1.36}", v) == "busybox:1.36"
    assert interpolate_string("${EMPTY:-fallback}", v) == "fallback"


def test_missing_variable_is_an_error_not_empty() -> None:
    with pytest.raises(InterpolationError, match="variable `TAG` is not set"):
        interpolate_string("busybox:${TAG}", vars_())


def test_dollar_dollar_escapes() -> None:
    assert interpolate_string("echo $${HOME} $$x", vars_()) == "echo ${HOME} $x"


def test_lone_dollar_is_kept() -> None:
    assert interpolate_string("cost $5 and $HOME", vars_()) == "cost $5 and $HOME"


@pytest.mark.parametrize("bad", ["${", "${a b}", "${}", "x ${1abc} y"])
def test_malformed_references_are_errors(bad: str) -> None:
    with pytest.raises(InterpolationError):
        interpolate_string(bad, vars_({"a": "1"}))


def test_interpolate_walks_data_and_reports_every_problem() -> None:
    data = {"a": ["${x}", "${missing1}"], "b": {"c": "${missing2}"}, "k${x}": "plain"}
    out, typed, errors = interpolate(data, vars_(defaults={"x": 7}))
    assert out["a"][0] == 7
    assert ("a", 0) in typed
    assert "k${x}" in out  # keys are never expanded
    assert [e.path for e in errors] == [("a", 1), ("b", "c")]


def test_interpolate_skips_given_paths() -> None:
    data = {"variables": {"v": "${nope}"}, "x": "${v}"}
    out, _, errors = interpolate(data, vars_(defaults={"v": "1"}), skip=frozenset({("variables",)}))
    assert out == {"variables": {"v": "${nope}"}, "x": "1"}
    assert errors == []


_text = st.text(alphabet=st.characters(blacklist_characters="$"), max_size=20)
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@given(st.lists(st.tuples(_text, _names, _text), max_size=5), st.data())
def test_interpolation_substitutes_every_reference(
    parts: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    values = {name: data.draw(_text) for _, name, _ in parts}
    template = "".join(f"{pre}${{{name}}}{post}" for pre, name, post in parts)
    expected = "".join(f"{pre}{values[name]}{post}" for pre, name, post in parts)
    got = interpolate_string(template, vars_(environ=values))
    assert (got if isinstance(got, str) else str(got)) == expected


@given(st.text(max_size=40))
def test_escaped_text_comes_back_unchanged(text: str) -> None:
    # `$$` is the escape: doubling every `$` makes any text literal.
    assert interpolate_string(text.replace("$", "$$"), vars_()) == text


@given(_names, st.integers() | st.booleans() | st.floats(allow_nan=False))
def test_whole_reference_returns_value_unchanged(name: str, value: int | bool | float) -> None:
    assert interpolate_string(f"${{{name}}}", vars_(defaults={name: value})) == value


def test_dotted_names_reach_values() -> None:
    v = vars_({"image.tag": "1.36", "web.replicas": "3"})
    assert interpolate_string("busybox:${image.tag}", v) == "busybox:1.36"
    assert interpolate_string("${web.replicas}", v) == "3"


def test_required_variable_says_its_message() -> None:
    with pytest.raises(InterpolationError, match=r"required variable `DB_URL` is not set: set it"):
        interpolate_string("${DB_URL:?set it}", vars_())
    with pytest.raises(InterpolationError, match=r"required variable `E` is empty: no"):
        interpolate_string("x-${E:?no}", vars_(environ={"E": ""}))
    # `?` (no colon) accepts an empty value; only unset is an error.
    assert interpolate_string("${E?no}", vars_(environ={"E": ""})) == ""
    assert interpolate_string("${n:?need n}", vars_(defaults={"n": 2})) == 2
    with pytest.raises(InterpolationError, match="required variable `X` is not set \\(give it"):
        interpolate_string("${X:?}", vars_())


def test_dash_default_applies_only_when_unset() -> None:
    v = vars_(environ={"EMPTY": ""})
    assert interpolate_string("${EMPTY-fallback}", v) == ""
    assert interpolate_string("${NOPE-fallback}", v) == "fallback"
