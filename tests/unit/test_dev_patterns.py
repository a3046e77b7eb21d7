"""`.dockerignore` matching and what a watch rule always ignores."""

from __future__ import annotations

import pytest

from podctl.dev.patterns import PathFilter, PatternSet


@pytest.mark.parametrize(
    ("pattern", "path", "matched"),
    [
        ("*.log", "app.log", True),
        ("*.log", "sub/app.log", False),  # `*` stays within one segment
        ("**/*.log", "sub/deep/app.log", True),
        ("**/*.log", "app.log", True),
        ("node_modules", "node_modules/x/y.js", True),  # a directory covers its contents
        ("/build", "build/out.o", True),  # a leading `/` is dropped
        ("./tmp", "tmp", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a-c].txt", "b.txt", True),
        ("[^a-c].txt", "b.txt", False),
        ("[^a-c].txt", "d.txt", True),
        ("docs/**/draft", "docs/a/b/draft", True),
        ("docs/**/draft", "docs/draft", True),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("# comment", "# comment", False),
    ],
)
def test_dockerignore_syntax(pattern: str, path: str, matched: bool) -> None:
    assert PatternSet([pattern]).matches(path) is matched


def test_last_match_wins_with_exceptions() -> None:
    rules = PatternSet(["*.md", "!README.md", "docs", "!docs/keep.md"])
    assert rules.matches("CHANGES.md")
    assert not rules.matches("README.md")
    assert rules.matches("docs/a.md")
    assert not rules.matches("docs/keep.md")
    assert not rules.matches("src/main.py")


@pytest.mark.parametrize(
    "path",
    [
        ".dockerignore",
        ".git/HEAD",
        "sub/.git/config",
        "index.html.swp",
        ".index.html.swp",
        "index.html~",
        ".#index.html",
        "4913",
        "sub/4913",
    ],
)
def test_always_ignored(path: str) -> None:
    # Even an include that would match them, and no ignore at all.
    assert not PathFilter(include=["**"]).wanted(path)


def test_ignore_then_include() -> None:
    f = PathFilter(ignore=["*.tmp", "cache/"], include=["*.html", "*.tmp", "css"])
    assert f.wanted("index.html")
    assert not f.wanted("x.tmp")  # ignored first
    assert f.wanted("css/site.css")
    assert not f.wanted("main.js")  # not included
    assert not f.wanted_dir("cache")
    assert f.wanted_dir("css")
