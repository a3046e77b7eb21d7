"""Typed, located access to a Kubernetes object, and the two ways to speak up:
a report entry (`note`, `rest`) for what does not carry over, a located issue
(`fail`) for what is wrong as Kubernetes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podctl.bridge.kube_in.objects import ImportResult, is_int, type_name
from podctl.bridge.report import FidelityEntry, Verdict
from podctl.spec.errors import FieldPath, SpecIssue, render_path

if TYPE_CHECKING:
    from podctl.bridge.kube_in.objects import KubeObject
    from podctl.bridge.kyaml import YamlDocument


class Reader:
    """Reads objects for the concept importers; collects report entries and issues."""

    def __init__(self) -> None:
        self.result = ImportResult()

    def note(self, obj: KubeObject, path: FieldPath, verdict: Verdict, reason: str) -> None:
        line, col = obj.key_at(path) if path else obj.at(())
        self.result.report.append(
            FidelityEntry(
                file=obj.file,
                line=line,
                column=col,
                document=obj.ref,
                path=render_path(path) if path else "",
                verdict=verdict,
                reason=reason,
            )
        )

    def fail(self, obj: KubeObject, path: FieldPath, message: str) -> None:
        line, col = obj.at(path)
        field = f"{obj.ref} {render_path(path)}" if path else obj.ref
        self.result.issues.append(
            SpecIssue(file=obj.file, line=line, column=col, field=field, message=message)
        )

    def fail_doc(self, file: str, doc: YamlDocument, path: FieldPath, message: str) -> None:
        line, col = doc.locator.find(path)
        self.result.issues.append(
            SpecIssue(file=file, line=line, column=col, field="", message=message)
        )

    def rest(
        self,
        obj: KubeObject,
        path: FieldPath,
        mapping: dict[str, Any],
        handled: set[str] | frozenset[str],
        reasons: dict[str, str] | None = None,
        defaults: dict[str, Any] | None = None,
        verdict: Verdict = "ignored",
    ) -> None:
        """Report every key of `mapping` that is not handled (and not at its default)."""
        for key, value in mapping.items():
            if key in handled:
                continue
            if defaults is not None and key in defaults and defaults[key] == value:
                continue
            if value is None or value == {} or value == []:
                continue
            reason = (reasons or {}).get(key, "not supported")
            self.note(obj, (*path, key), verdict, reason)

    # -- typed access ----------------------------------------------------------

    def get(self, obj: KubeObject, path: FieldPath) -> Any:
        value: Any = obj.body
        for part in path:
            if isinstance(part, int):
                if not isinstance(value, list) or part >= len(value):
                    return None
                value = value[part]
            elif not isinstance(value, dict):
                return None
            else:
                value = value.get(part)
        return value

    def mapping(self, obj: KubeObject, path: FieldPath) -> dict[str, Any]:
        value = self.get(obj, path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(obj, path, f"expected a mapping, got {type_name(value)}")
            return {}
        return value

    def seq(self, obj: KubeObject, path: FieldPath) -> list[Any]:
        value = self.get(obj, path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(obj, path, f"expected a list, got {type_name(value)}")
            return []
        return value

    def integer(self, obj: KubeObject, path: FieldPath, *, minimum: int = 0) -> int | None:
        value = self.get(obj, path)
        if value is None:
            return None
        if not is_int(value):
            self.fail(obj, path, f"expected an integer, got {type_name(value)}")
            return None
        if value < minimum:
            self.fail(obj, path, f"must be {minimum} or more, got {value}")
            return None
        return int(value)

    def text(self, obj: KubeObject, path: FieldPath, *, required: bool = False) -> str | None:
        value = self.get(obj, path)
        if value is None:
            if required:
                self.fail(obj, path[:-1], f"missing required field `{path[-1]}`")
            return None
        if not isinstance(value, str):
            self.fail(obj, path, f"expected a string, got {type_name(value)}")
            return None
        return value

    def strings(self, obj: KubeObject, path: FieldPath) -> list[str] | None:
        value = self.get(obj, path)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(obj, path, f"expected a list of strings, got {type_name(value)}")
            return None
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                out.append(str(item))  # what the API server's JSON would have refused; kind
            else:
                self.fail(obj, (*path, i), f"expected a string, got {type_name(item)}")
        return out

    # -- input -------------------------------------------------------------------
