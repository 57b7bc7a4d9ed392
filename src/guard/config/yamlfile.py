"""Read YAML the strict way, and point at the line behind any config or rule problem.

PyYAML silently keeps the last of two equal keys and forgets where values came from. An SRE
fixing a config wants `file:line:column` and wants a duplicated key to be an error, so this
module parses with a loader that rejects duplicates and keeps the node tree to locate a
field path (as pydantic reports it) in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: where, which field, and what."""

    file: str
    path: str  # dotted field path, e.g. "apps.pegasus.services.0.name"; "" for the file
    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key].start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {first})", key_node.start_mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document with its node tree, so field paths can be located."""

    file: str
    data: Any
    node: yaml.Node | None

    def locate(self, path: Sequence[str | int]) -> tuple[int, int] | None:
        """1-based (line, column) of the deepest node along `path` that exists."""
        node = self.node
        if node is None:
            return None
        mark = node.start_mark
        for part in path:
            child = _child(node, part)
            if child is None:
                break
            node = child
            mark = node.start_mark
        return (mark.line + 1, mark.column + 1)

    def has(self, path: Sequence[str | int]) -> bool:
        """Whether every step of `path` exists in the file."""
        node = self.node
        for part in path:
            if node is None:
                return False
            node = _child(node, part)
        return node is not None

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        where = self.locate(path)
        dotted = ".".join(str(p) for p in path)
        if where is None:
            return Problem(self.file, dotted, message)
        return Problem(self.file, dotted, message, where[0], where[1])


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for key_node, value_node in pairs:
            if str(key_node.value) == str(part):
                return value_node
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        items: list[yaml.Node] = node.value
        return items[part] if 0 <= part < len(items) else None
    return None


def key_location(doc: YamlDocument, path: Sequence[str | int]) -> tuple[int, int] | None:
    """1-based (line, column) of the *key* at the end of `path` (for unknown-key errors)."""
    parent = doc.node
    for part in path[:-1]:
        if parent is None:
            return None
        parent = _child(parent, part)
    if isinstance(parent, yaml.MappingNode):
        for key_node, _ in parent.value:
            if str(key_node.value) == str(path[-1]):
                return (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    return None


def load_documents(path: Path) -> tuple[list[YamlDocument], list[Problem]]:
    """Every YAML document in `path`, or the problems that stop it from being read."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        return [], [Problem(name, "", f"cannot read: {err.strerror or err}")]
    except UnicodeDecodeError as err:
        return [], [Problem(name, "", f"not UTF-8 text: {err.reason} at byte {err.start}")]
    try:
        nodes = list(yaml.compose_all(text, Loader=_StrictLoader))
        datas = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        message = f"invalid YAML: {err.problem or err}"
        if mark is None:
            return [], [Problem(name, "", message)]
        return [], [Problem(name, "", message, mark.line + 1, mark.column + 1)]
    except yaml.YAMLError as err:
        return [], [Problem(name, "", f"invalid YAML: {err}")]
    docs = [YamlDocument(name, d, n) for d, n in zip(datas, nodes, strict=True) if n is not None]
    return docs, []
