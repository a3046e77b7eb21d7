"""`.dockerignore` pattern matching, as moby's `patternmatcher` does it.

- one pattern per entry; `#` starts a comment line in a file, blank lines are skipped;
- `*` matches within one path segment, `?` one character, `[a-z]`/`[^a-z]` a class,
  `**` any number of segments, `\\` escapes the next character;
- a pattern matching a directory matches everything below it;
- a leading `!` re-includes what an earlier pattern excluded; the last matching
  pattern decides;
- a leading `/` and `./` are dropped: every pattern is relative to the watch path.

Editors' temporaries and VCS data are always ignored, whatever the rules say
(vim's `*.swp` and its `4913` probe file, emacs' `*~` and `.#*` lock links,
`.git/`), and so is `.dockerignore` itself, as Compose does.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

ALWAYS_IGNORED = (
    "**/.dockerignore",
    "**/.git",
    "**/*.swp",
    "**/*~",
    "**/.#*",
    "**/4913",
)


def _translate(pattern: str) -> str:
    """A regex source for one (already cleaned) pattern, anchored at both ends."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                    out.append("(?:.*/)?")  # zero or more whole segments
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[]", i) else i + 1)
            if end == -1:
                out.append(re.escape(c))  # Go reports ErrBadPattern; a literal is kinder
            else:
                body = pattern[i + 1 : end]
                if body[:1] in ("^", "!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    # A match on a directory covers everything beneath it.
    return "".join(out) + "(?:/.*)?"


def clean(pattern: str) -> str:
    """A pattern as moby cleans it: trimmed, no leading `/` or `./`, `..` folded."""
    text = pattern.strip()
    cleaned = posixpath.normpath(text.lstrip("/")) if text.lstrip("/") else ""
    return "" if cleaned == "." else cleaned


class PatternSet:
    """An ordered list of `.dockerignore` patterns; `matches(rel)` applies them all."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in patterns:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            negate = text.startswith("!")
            body = clean(text[1:] if negate else text)
            if body:
                self.rules.append((negate, re.compile(_translate(body))))

    def matches(self, rel: str) -> bool:
        """Whether `rel` (a `/`-separated path relative to the watch path) is matched."""
        matched = False
        for negate, rx in self.rules:
            if matched == negate and rx.fullmatch(rel) is not None:
                matched = not negate
        return matched

    def __bool__(self) -> bool:
        return bool(self.rules)


_ALWAYS = PatternSet(ALWAYS_IGNORED)


class PathFilter:
    """What a watch rule considers: not always-ignored, not `ignore`d, and (when
    `include` is given) matched by one of `include`."""

    def __init__(self, ignore: Iterable[str] = (), include: Iterable[str] = ()) -> None:
        self.ignore = PatternSet(ignore)
        self.include = PatternSet(include)

    def wanted(self, rel: str) -> bool:
        if not rel or rel == ".":
            return True
        if _ALWAYS.matches(rel) or self.ignore.matches(rel):
            return False
        return not self.include or self.include.matches(rel)

    def wanted_dir(self, rel: str) -> bool:
        """Whether a walk should descend into directory `rel` (an ignored directory
        hides all it holds, unless a `!` exception could bring something back)."""
        if not rel or rel == ".":
            return True
        if _ALWAYS.matches(rel):
            return False
        if any(negate for negate, _ in self.ignore.rules):
            return True
        return not self.ignore.matches(rel)


def read_ignore_file(path: str) -> list[str]:
    """The patterns of a `.dockerignore` file, or none when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
