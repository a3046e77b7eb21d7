"""Parse YAML and TOML into plain data plus where each field was written.

msgspec decodes fast but reports errors as `$.pods[...].replicas`, without the
dict keys and without a line. So the file is first parsed into plain Python
data here, with a `Locator` mapping every field path to its line and column;
the loader then validates that data piece by piece and points each problem at
the exact spot. YAML positions are exact (pyyaml's composer marks every node);
TOML positions come from a small scanner over the text, which is only ever run
on text that `tomllib` has already accepted.
"""

from __future__ import annotations

import bisect
import re
import tomllib
from typing import TYPE_CHECKING, Any

import yaml

from podctl.spec import limits
from podctl.spec.errors import render_path

if TYPE_CHECKING:
    from podctl.spec.errors import FieldPath


Position = tuple[int, int]  # 1-based line and column


class Locator:
    """Field path -> (line, column), for keys and for values."""

    def __init__(self) -> None:
        self.keys: dict[FieldPath, Position] = {}
        self.values: dict[FieldPath, Position] = {}
        self.scalars: set[FieldPath] = set()

    def find(self, path: FieldPath) -> Position:
        """Where to point for a problem with the value at `path`.

        A scalar is pointed at itself (`replicas: abc` -> the `abc`); a mapping or
        list at its key, which is where a reader looks. Paths that were never
        written (a missing field) fall back to their nearest written ancestor.
        """
        p = tuple(path)
        while True:
            if p in self.scalars and p in self.values:
                return self.values[p]
            if p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return (1, 1)
            p = p[:-1]

    def find_key(self, path: FieldPath) -> Position:
        """Where the key of `path` is written (for unknown or duplicate fields)."""
        return self.keys.get(tuple(path)) or self.find(path)


class ParseError(Exception):
    """The text is not valid YAML/TOML; carries the position of the problem."""

    def __init__(self, line: int, column: int, message: str) -> None:
        self.line = line
        self.column = column
        self.message = message
        super().__init__(f"{line}:{column}: {message}")


class DuplicateKey(Exception):
    def __init__(self, path: FieldPath, key: str) -> None:
        self.path = path
        self.key = key
        super().__init__(key)


# ---------------------------------------------------------------- YAML


def _mark(mark: yaml.Mark) -> Position:
    return (mark.line + 1, mark.column + 1)


LIMIT_NOTE = "(the limit for a stack file)"
_TOO_DEEP = f"nesting deeper than {limits.MAX_DEPTH} levels {LIMIT_NOTE}"


class LimitExceeded(Exception):
    """A limit of `podctl.spec.limits` was crossed at `mark`."""

    def __init__(self, mark: yaml.Mark, message: str) -> None:
        self.mark = mark
        self.message = message
        super().__init__(message)


class BoundedLoader(yaml.SafeLoader):
    """pyyaml's safe loader, composing under the limits of `podctl.spec.limits`.

    Counting happens in `compose_node`, before anything is constructed: a node
    counts once, an alias counts as the whole (expanded) subtree of its anchor,
    whose size was memoised when the anchored node was composed. So an alias
    bomb is refused at the first alias that crosses the limit, having composed
    only its few hundred bytes of text; the node graph it would expand to is
    never built. Depth is checked before descending, so pyyaml's recursive
    composer never goes deeper than MAX_DEPTH levels either.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0  # of the node being composed; the root is 0
        self.nodes = 0  # expanded nodes composed so far
        self.chars = 0  # expanded scalar characters so far
        # Anchor -> (nodes, chars, height) of its node once fully composed. An
        # anchor that is composing has no entry yet: an alias to it is a cycle.
        self.expanded: dict[str, tuple[int, int, int]] = {}
        # Per level being composed: the height of its tallest child so far.
        self.heights: list[int] = [0]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            anchor = event.anchor
            if anchor in self.anchors:  # else pyyaml reports the undefined alias
                size = self.expanded.get(anchor)
                if size is None:
                    raise LimitExceeded(
                        event.start_mark, f"alias `*{anchor}` refers to its own anchor"
                    )
                self.nodes += size[0]
                self.chars += size[1]
                self._check(event.start_mark, f"alias `*{anchor}` expands the document to", size[2])
                self.heights[-1] = max(self.heights[-1], size[2] + 1)
            return super().compose_node(parent, index)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if self.depth > limits.MAX_DEPTH:
            raise LimitExceeded(event.start_mark, _TOO_DEEP)
        nodes, chars = self.nodes, self.chars
        self.nodes += 1
        if isinstance(event, yaml.ScalarEvent):
            self.chars += len(event.value)
        self._check(event.start_mark, "the document has", 0)
        self.depth += 1
        self.heights.append(0)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            height = self.heights.pop()
        self.heights[-1] = max(self.heights[-1], height + 1)
        if event.anchor is not None:
            self.expanded[event.anchor] = (self.nodes - nodes, self.chars - chars, height)
        return node

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The scanner runs ahead of the composer, and keeps one possible simple
        # key per open `[`/`{` that it re-checks on every token: 10,000 `[` cost
        # it seconds before the composer sees the first one. A flow collection
        # nested in MAX_DEPTH + 1 others is too deep for the composer anyway.
        if self.flow_level > limits.MAX_DEPTH:
            raise LimitExceeded(
                self.get_mark(), f"nesting deeper than {limits.MAX_DEPTH} levels {LIMIT_NOTE}"
            )
        super().fetch_flow_collection_start(TokenClass)

    def _check(self, mark: yaml.Mark, what: str, height: int) -> None:
        if self.nodes > limits.MAX_NODES:
            raise LimitExceeded(mark, f"{what} more than {limits.MAX_NODES} nodes {LIMIT_NOTE}")
        if self.chars > limits.MAX_TEXT_CHARS:
            raise LimitExceeded(
                mark, f"{what} more than {limits.MAX_TEXT_CHARS} characters of text {LIMIT_NOTE}"
            )
        if self.depth + height > limits.MAX_DEPTH:
            raise LimitExceeded(
                mark, f"{what} nesting deeper than {limits.MAX_DEPTH} levels {LIMIT_NOTE}"
            )


def parse_yaml(text: str) -> tuple[Any, Locator, list[DuplicateKey]]:
    """YAML text -> (plain data, locator, duplicate keys found). Raises ParseError.

    The limits of `podctl.spec.limits` (expanded size, depth) are ParseErrors
    too, located at the node or alias that crosses them.
    """
    loader = BoundedLoader(text)
    locator = Locator()
    duplicates: list[DuplicateKey] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, locator, duplicates
        data = _yaml_node(loader, node, (), locator, duplicates)
    except LimitExceeded as exc:
        raise ParseError(*_mark(exc.mark), exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _mark(mark) if mark is not None else (1, 1)
        # Only the problem text: the mark's snippet would echo file content.
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ParseError(line, col, f"invalid YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise ParseError(1, 1, f"invalid YAML: {type(exc).__name__}") from None
    except RecursionError:
        # Not expected under MAX_DEPTH; never let it escape as a crash.
        raise ParseError(
            *_mark(loader.get_mark()), f"nesting too deep to read {LIMIT_NOTE}"
        ) from None
    finally:
        loader.dispose()
    return data, locator, duplicates


def _yaml_node(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: FieldPath,
    locator: Locator,
    duplicates: list[DuplicateKey],
) -> Any:
    locator.values.setdefault(path, _mark(node.start_mark))
    if isinstance(node, yaml.ScalarNode):
        locator.scalars.add(path)
        value = loader.construct_object(node, deep=True)
        if value is None or isinstance(value, str | int | float | bool):
            return value
        # Timestamps and binary: keep what the user typed; the schema has no such types.
        return str(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [
            _yaml_node(loader, child, (*path, i), locator, duplicates)
            for i, child in enumerate(node.value)
        ]
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                # The raw text: `on:` stays "on", not YAML 1.1's True.
                key = str(key_node.value)
            else:
                raise yaml.MarkedYAMLError(
                    problem="mapping keys must be plain scalars", problem_mark=key_node.start_mark
                )
            child = (*path, key)
            if key in out:
                duplicates.append(DuplicateKey(child, key))
                locator.keys[child] = _mark(key_node.start_mark)
                continue
            locator.keys[child] = _mark(key_node.start_mark)
            out[key] = _yaml_node(loader, value_node, child, locator, duplicates)
        return out
    return None


# ---------------------------------------------------------------- TOML

_TOML_ERROR_AT = re.compile(r"\(at line (\d+), column (\d+)\)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_toml(text: str) -> tuple[Any, Locator]:
    """TOML text -> (plain data, locator). Raises ParseError.

    tomllib recurses once per nested array or inline table, so the depth limit
    is checked on the text first (it also gives the position); a dotted key or
    table header can nest without brackets, so the parsed data is measured
    again, without recursion, before anything walks it.
    """
    where = _toml_too_deep(text, limits.MAX_DEPTH)
    if where is not None:
        raise ParseError(*where, _TOO_DEEP)
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ParseError(1, 1, _TOO_DEEP) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_ERROR_AT.search(message)
        if match:
            line, col = int(match.group(1)), int(match.group(2))
        elif "end of document" in message:
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        else:
            line, col = 1, 1
        message = _TOML_ERROR_AT.sub("", message).strip()
        raise ParseError(line, col, f"invalid TOML: {message}") from None
    problem = measure(data)
    if problem is not None:
        raise ParseError(1, 1, problem)
    locator = Locator()
    try:
        _TomlScanner(text, locator).scan()
    except (IndexError, ValueError, RecursionError, tomllib.TOMLDecodeError):
        # Positions are best effort; the data itself came from tomllib.
        pass
    return _plain_toml(data), locator


def measure(data: Any) -> str | None:
    """Why plain `data` is over the limits (nodes, text, depth), or None. Iterative."""
    nodes = chars = 0
    stack: list[tuple[Any, FieldPath]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        nodes += 1
        if isinstance(value, dict):
            nodes += len(value)  # the keys
            chars += sum(len(str(k)) for k in value)
            stack.extend((v, (*path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            chars += len(value)
        if len(path) > limits.MAX_DEPTH:
            problem = f"nesting deeper than {limits.MAX_DEPTH} levels"
        elif nodes > limits.MAX_NODES:
            problem = f"the document has more than {limits.MAX_NODES} nodes"
        elif chars > limits.MAX_TEXT_CHARS:
            problem = f"the document has more than {limits.MAX_TEXT_CHARS} characters of text"
        else:
            continue
        at = f" (at `{render_path(path[: limits.MAX_DEPTH + 1])}`)" if path else ""
        return f"{problem}{at} {LIMIT_NOTE}"
    return None


def _toml_too_deep(text: str, limit: int) -> Position | None:
    """Where TOML text first nests deeper than `limit`, or None. Iterative.

    Counts what tomllib will nest: table headers (`[a.b]` is 2 levels, `[[a]]`
    one more for the list index), dotted keys, arrays and inline tables. It
    only has to be right for text tomllib accepts; on anything else it may
    miss (tomllib then reports the syntax error) but it never recurses.
    """
    n = len(text)
    pos = 0
    table = 0  # levels of the current [table] header
    # Open `[` / `{` of values: ("[", level of its items) or ("{", level of the table).
    stack: list[tuple[str, int]] = []
    key_mode = True  # reading a key (else a value)
    key_start = -1  # where the key being read starts
    parts = 1  # parts of the dotted key being read
    level = 0  # level of the value being read

    def position(offset: int) -> Position:
        line_start = text.rfind("\n", 0, offset) + 1
        return (text.count("\n", 0, offset) + 1, offset - line_start + 1)

    def string_end(i: int) -> int:
        quote = text[i]
        if text.startswith(quote * 3, i):
            end = text.find(quote * 3, i + 3)
            if end < 0:
                return n
            end += 3
            while end < n and text[end] == quote:
                end += 1
            return end
        i += 1
        while i < n and text[i] not in (quote, "\n"):
            i += 2 if quote == '"' and text[i] == "\\" else 1
        return i + 1

    while pos < n:
        ch = text[pos]
        if ch == "\n" and not stack:
            key_mode, key_start, parts = True, -1, 1
            pos += 1
        elif ch in " \t\r\n":
            pos += 1
        elif ch == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
        elif ch in "\"'":
            if key_mode and key_start < 0:
                key_start = pos
            pos = string_end(pos)
        elif key_mode and not stack and ch == "[" and key_start < 0:
            # A table header: count its dotted parts outside quotes.
            double = text.startswith("[[", pos)
            i = pos + (2 if double else 1)
            table = 1 + int(double)
            while i < n and text[i] not in "]\n":
                if text[i] in "\"'":
                    i = string_end(i)
                    continue
                table += text[i] == "."
                i += 1
            if table > limit:
                return position(pos)
            pos = i
        elif key_mode:
            if ch == "}" and stack:  # `{}`
                stack.pop()
                key_mode = False
            elif ch == ".":
                parts += 1
            elif ch == "=":
                level = (stack[-1][1] if stack else table) + parts
                if level > limit:
                    return position(key_start if key_start >= 0 else pos)
                key_mode = False
            elif key_start < 0:
                key_start = pos
            pos += 1
        elif ch == "[":
            level += 1
            if level > limit:
                return position(pos)
            stack.append(("[", level))
            pos += 1
        elif ch == "{":
            stack.append(("{", level))
            key_mode, key_start, parts = True, -1, 1
            pos += 1
        elif ch in "]}" and stack:
            stack.pop()
            pos += 1
        elif ch == "," and stack:
            kind, level = stack[-1]
            if kind == "{":
                key_mode, key_start, parts = True, -1, 1
            pos += 1
        else:
            pos += 1
    return None


def _plain_toml(value: Any) -> Any:
    # TOML dates/times have no place in the schema; keep their text form.
    if isinstance(value, dict):
        return {k: _plain_toml(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_toml(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class _TomlScanner:
    """Walks valid TOML text and records where each key and value starts."""

    def __init__(self, text: str, locator: Locator) -> None:
        self.text = text
        self.loc = locator
        self.pos = 0
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        # Array-of-tables path -> index of its last element, so `[[a]]` headers
        # and `[a.b]` headers below them get the right list index.
        self.arrays: dict[FieldPath, int] = {}

    def where(self, offset: int) -> Position:
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return (line + 1, offset - self.line_starts[line] + 1)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_blank(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def scan(self) -> None:
        table: FieldPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            start = self.pos
            if self.peek(2) == "[[":
                self.pos += 2
                keys = self.keys()
                base = (*self.resolve(keys[:-1]), keys[-1])
                index = self.arrays.get(base, -1) + 1
                self.arrays[base] = index
                table = (*base, index)
                self.loc.keys.setdefault(base, self.where(start))
                self.loc.keys[table] = self.where(start)
                self.pos = self.text.index("]]", self.pos) + 2
            elif self.peek() == "[":
                self.pos += 1
                table = self.resolve(self.keys())
                for depth in range(1, len(table) + 1):
                    self.loc.keys.setdefault(table[:depth], self.where(start))
                self.pos = self.text.index("]", self.pos) + 1
            else:
                self.key_value(table)

    def resolve(self, keys: list[str]) -> FieldPath:
        out: FieldPath = ()
        for key in keys:
            out = (*out, key)
            if out in self.arrays:
                out = (*out, self.arrays[out])
        return out

    def keys(self) -> list[str]:
        """A dotted key; records nothing (callers know what it names)."""
        keys: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            ch = self.peek()
            if ch == '"':
                end = self.string_end(self.pos)
                keys.append(tomllib.loads("k = " + self.text[self.pos : end])["k"])
                self.pos = end
            elif ch == "'":
                end = self.text.index("'", self.pos + 1) + 1
                keys.append(self.text[self.pos + 1 : end - 1])
                self.pos = end
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    raise ValueError("expected a key")
                keys.append(match.group())
                self.pos = match.end()
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return keys
            self.pos += 1

    def key_value(self, table: FieldPath) -> None:
        self.skip_blank(newlines=False)
        start = self.where(self.pos)
        keys = self.keys()
        path = table
        for key in keys:
            path = (*path, key)
            self.loc.keys.setdefault(path, start)
        self.skip_blank(newlines=False)
        if self.peek() != "=":
            raise ValueError("expected `=`")
        self.pos += 1
        self.skip_blank(newlines=False)
        self.value(path)

    def value(self, path: FieldPath) -> None:
        self.loc.values[path] = self.where(self.pos)
        ch = self.peek()
        if ch == "{":
            self.pos += 1
            while True:
                self.skip_blank(newlines=True)
                if self.peek() == "}":
                    self.pos += 1
                    return
                self.key_value(path)
                self.skip_blank(newlines=True)
                self.separator("}")
        elif ch == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_blank(newlines=True)
                if self.peek() == "]":
                    self.pos += 1
                    return
                self.value((*path, index))
                self.skip_blank(newlines=True)
                if self.separator("]"):
                    index += 1
        else:
            self.loc.scalars.add(path)
            if self.peek(3) in ('"""', "'''"):
                quote = self.peek(3)
                end = self.text.index(quote, self.pos + 3)
                # A closing run may be up to five quotes long (`""""""` etc.).
                while self.text[end + 3 : end + 4] == quote[0]:
                    end += 1
                self.pos = end + 3
            elif ch == '"':
                self.pos = self.string_end(self.pos)
            elif ch == "'":
                self.pos = self.text.index("'", self.pos + 1) + 1
            else:
                match = re.compile(r"[^,\]}\s#]+").match(self.text, self.pos)
                self.pos = match.end() if match else self.pos + 1
                # Dates with a space between date and time ("1979-05-27 07:32:00").
                more = re.compile(r" \d{2}:\d{2}[^,\]}\s#]*").match(self.text, self.pos)
                if more:
                    self.pos = more.end()

    def separator(self, closer: str) -> bool:
        """Consume a `,` (True) or stop before `closer` (False); anything else is a scan error."""
        if self.peek() == ",":
            self.pos += 1
            return True
        if self.peek() != closer:
            raise ValueError("unexpected text in TOML value")
        return False

    def string_end(self, start: int) -> int:
        """Offset just past a basic string starting at `start`."""
        i = start + 1
        while self.text[i] != '"':
            i += 2 if self.text[i] == "\\" else 1
        return i + 1
