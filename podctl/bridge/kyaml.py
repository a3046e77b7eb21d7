"""Multi-document YAML with a position for every field (Kubernetes manifests).

The stack-file parser reads exactly one document; Kubernetes files hold many,
separated by `---`, and often empty ones. Each document keeps its own
`Locator` so a problem points at `FILE:LINE:COL` inside the right document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from podctl.spec.locator import BoundedLoader, LimitExceeded, Locator, ParseError

if TYPE_CHECKING:
    from podctl.spec.errors import FieldPath


class YamlDocument:
    """One document of a multi-document file: plain data, positions, duplicate keys."""

    __slots__ = ("data", "duplicates", "index", "locator")

    def __init__(self, index: int, data: Any, locator: Locator, duplicates: list[FieldPath]):
        self.index = index
        self.data = data
        self.locator = locator
        self.duplicates = duplicates


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def parse_documents(text: str) -> list[YamlDocument]:
    """Every document in `text` (empty ones included, as data None). Raises ParseError."""
    # The stack loader's limits (alias expansion, depth) hold for manifests too: a
    # file is read here only to tell a manifest from a stack file, before any check.
    loader = BoundedLoader(text)
    out: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            locator = Locator()
            duplicates: list[FieldPath] = []
            data = None if node is None else _node(loader, node, (), locator, duplicates)
            out.append(YamlDocument(len(out), data, locator, duplicates))
    except LimitExceeded as exc:
        raise ParseError(exc.mark.line + 1, exc.mark.column + 1, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _pos(mark) if mark is not None else (1, 1)
        # Only the problem text: the mark's snippet would echo file content (maybe a secret).
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ParseError(line, col, f"invalid YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise ParseError(1, 1, f"invalid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise ParseError(1, 1, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return out


def _node(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: FieldPath,
    locator: Locator,
    duplicates: list[FieldPath],
) -> Any:
    locator.values.setdefault(path, _pos(node.start_mark))
    if isinstance(node, yaml.ScalarNode):
        locator.scalars.add(path)
        value = loader.construct_object(node, deep=True)
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return str(node.value)  # timestamps, binary: the text as written
    if isinstance(node, yaml.SequenceNode):
        return [
            _node(loader, child, (*path, i), locator, duplicates)
            for i, child in enumerate(node.value)
        ]
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.MarkedYAMLError(
                    problem="mapping keys must be plain scalars", problem_mark=key_node.start_mark
                )
            key = str(key_node.value)
            child = (*path, key)
            if key in out:
                duplicates.append(child)
            locator.keys[child] = _pos(key_node.start_mark)
            out[key] = _node(loader, value_node, child, locator, duplicates)
        return out
    return None


__all__ = ["ParseError", "YamlDocument", "parse_documents"]
