"""The package's parts import one way: read from the source, so a new import that breaks the layout fails here.

The rules (docs/extending.md, README's layout): no import cycle between modules; the store knows nothing of
rendering (the exposition's or the status page's); a kind's polling code never imports the exposition (only its
`render` module does); the exposition never imports httpx, even through another module; the HTTP server reads a
Publication, never the poller.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yields the imports that run when the module is imported or its functions are called, leaving out those under
    `if TYPE_CHECKING:` (annotations only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skip:
            yield node


@cache
def imports(module: str) -> frozenset[str]:
    """Returns what `module` imports at run time: modules of the package by full name (a `from package import
    submodule` names the submodule), other top-level packages by name."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        for alias in node.names:
            out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base)
    return frozenset(n if n in modules() else n.split(".")[0] for n in out)


def closure(module: str) -> set[str]:
    """Returns every module and package `module` imports, directly or through other modules of the package."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in imports(todo.pop()):
            if name not in seen:
                seen.add(name)
                if name in modules():
                    todo.append(name)
    return seen


def of(prefix: str) -> list[str]:
    return sorted(m for m in modules() if m == prefix or m.startswith(prefix + "."))


def test_no_module_imports_itself_through_others() -> None:
    cycles = sorted(m for m in modules() if m in closure(m) and m != "exporter")
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_store_knows_nothing_of_rendering() -> None:
    assert not {m for m in closure("exporter.store") if m.startswith(("exporter.exposition", "exporter.pages"))}


@pytest.mark.parametrize("module", of("exporter.exposition"))
def test_the_exposition_never_imports_httpx_or_a_kind(module: str) -> None:
    reached = closure(module)
    assert "httpx" not in reached
    assert not {m for m in reached if m.startswith("exporter.sources")}


@pytest.mark.parametrize("module", [m for m in of("exporter.sources") if not m.endswith(".render")
                                    and modules()[m].name != "__init__.py"])
def test_polling_code_never_imports_the_exposition(module: str) -> None:
    direct = {m for m in imports(module) if m.startswith("exporter.exposition")}
    assert not direct, f"{module} imports {sorted(direct)}; only a kind's render module may"


def test_the_server_reads_a_publication_not_the_poller() -> None:
    assert "exporter.poller" not in closure("exporter.server")
    assert "exporter.publication" in imports("exporter.server")


def test_the_rules_see_the_imports_they_judge() -> None:
    """The reader finds what the modules import (a reader that found nothing would pass every rule above)."""
    assert {"exporter.poller", "exporter.sources", "exporter.server"} <= imports("exporter.runtime")
    assert "exporter.sources.maxcompute.render" in imports("exporter.sources.maxcompute.source")
    assert "httpx" in closure("exporter.sources.maxcompute")
    assert "exporter.contract" in closure("exporter.exposition.renderer")
