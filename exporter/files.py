"""The files the exporter is given, read defensively: bounded in size, strictly UTF-8, and (YAML) bounded in nesting
and in what its aliases expand to, with duplicate keys refused.

Every refusal is a FileError: one line naming the file and what is wrong, never quoting the file's content (a
credential file holds a secret), except a YAML file's offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, Node

KiB = 1024
MiB = 1024 * KiB
# The config and web config files: the example config is 3 KiB; 1 MiB holds some 13,000 sources.
CONFIG_MAX_BYTES = MiB
# A credential or OIDC token file: a key is tens of bytes, a service account token one or two KiB.
SECRET_MAX_BYTES = 64 * KiB
# Nesting levels of a YAML file; a config needs 5. libyaml composes recursively in C: 100,000 levels crash the process.
MAX_DEPTH = 64
# Values in a YAML file once its aliases are expanded: nine aliases of nine aliases... ("billion laughs") would make
# validation walk billions. A 1 MiB file without aliases holds at most about 500,000.
MAX_VALUES = 1_000_000
# Characters of an integer: Python converts a long sexagesimal one (`1:59:59:...`) in quadratic time, and refuses a
# decimal one past 4,300 digits with an error of its own.
MAX_INT_CHARS = 100
# libyaml parses several times faster than the pure-Python loader (which took minutes and gigabytes on 50 MB).
_BASE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FileError(Exception):
    """A file that is refused; `str()` is one line naming the file, `reason` says why without naming it."""

    def __init__(self, path: Path, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"cannot read {path}: {reason}")
        self.reason = reason


def size_text(limit: int) -> str:
    """Returns a byte count as `1 MiB`, `64 KiB` or `100 bytes`."""
    for unit, size in (("MiB", MiB), ("KiB", KiB)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def read_text(path: Path, max_bytes: int) -> str:
    """Returns the file's text; raises FileError when it cannot be read, holds more than `max_bytes` or is not UTF-8.

    Never reads more than `max_bytes` + 1 bytes, whatever the file's size."""
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise FileError(path, exc.strerror or type(exc).__name__) from None
    except ValueError:  # how open() refuses a path with a NUL character
        raise FileError(path, "the path holds a NUL character") from None
    if len(data) > max_bytes:
        raise FileError(path, f"larger than {size_text(max_bytes)}, more than such a file ever needs; is it the "
                              "right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileError(path, f"not UTF-8 text (an invalid byte on line {line}); save it as UTF-8") from None


def shorten(value: Any) -> str:
    """Returns the repr of a value a file holds, cut to fit in a one-line message (repr escapes line breaks)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Loader(_BASE_LOADER):  # type: ignore[valid-type,misc]
    """The safe loader (libyaml's when installed), refusing duplicate keys, overlong integers and impossible dates."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # merged keys may be overridden: that is what a merge is for
                key = self.construct_object(key_node)
                try:
                    first = first_lines.get(key)
                except TypeError:
                    continue  # an unhashable key: the safe constructor refuses it
                if first is not None:
                    raise ConstructorError(None, None, f"duplicate key {shorten(key)} (first on line {first}); give "
                                                       "each key once", key_node.start_mark)
                first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]

    def construct_yaml_int(self, node: Node) -> int:
        if len(node.value) > MAX_INT_CHARS:
            raise ConstructorError(None, None, f"an integer longer than {MAX_INT_CHARS} characters", node.start_mark)
        return super().construct_yaml_int(node)  # type: ignore[no-any-return]

    def construct_yaml_timestamp(self, node: Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:  # 2025-02-30 looks like a date but is none
            raise ConstructorError(None, None, f"{shorten(node.value)} is not a valid date: {exc}",
                                   node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def _check_shape(text: str) -> None:
    """Raises a MarkedYAMLError, naming the line, when the text nests deeper than MAX_DEPTH, its aliases expand to
    more than MAX_VALUES values, or an alias stands inside the collection it names.

    Reads parser events only, which libyaml produces without recursion, before anything composes the tree
    (recursively); it stops at the first event past a bound, so a hostile file costs little."""
    open_anchors: list[tuple[str | None, int]] = []  # (anchor, values before it) of each open collection
    sizes: dict[str, int] = {}  # values under each closed anchor, aliases expanded
    values = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, CollectionStartEvent):
            if len(open_anchors) >= MAX_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels",
                                           problem_mark=event.start_mark)
            open_anchors.append((event.anchor, values))
            values += 1
        elif isinstance(event, CollectionEndEvent):
            anchor, before = open_anchors.pop()
            if anchor is not None:
                sizes[anchor] = values - before
        elif isinstance(event, ScalarEvent):
            values += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_anchors):
                raise yaml.MarkedYAMLError(problem=f"the alias *{event.anchor} refers to a collection that holds it",
                                           problem_mark=event.start_mark)
            values += sizes.get(event.anchor, 1)  # an unknown anchor: the composer refuses it
        if values > MAX_VALUES:
            raise yaml.MarkedYAMLError(problem=f"more than {MAX_VALUES:,} values once aliases are expanded",
                                       problem_mark=event.start_mark)


def load_yaml(path: Path, max_bytes: int = CONFIG_MAX_BYTES) -> Any:
    """Returns the data of a YAML file of one document (None when it is empty); raises FileError when the file is
    refused by `read_text`, is not YAML, nests deeper than MAX_DEPTH, expands past MAX_VALUES or repeats a key."""
    text = read_text(path, max_bytes)
    try:
        _check_shape(text)
        return yaml.load(text, Loader=_Loader)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        said = (getattr(exc, "context", None), getattr(exc, "problem", None) or getattr(exc, "reason", None))
        problem = ", ".join(str(part) for part in said if part) or "unreadable"
        reason = f"not valid YAML{where}: {' '.join(problem.split())}"
        raise FileError(path, reason, f"{path} is {reason}") from None
