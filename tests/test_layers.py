"""The package docstring's layers hold: no import goes up a layer, and no import loops."""

import ast
import re
from pathlib import Path

import callwatch

PACKAGE = Path(callwatch.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The callwatch modules `name` imports, wherever the import is written (also in functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layers() -> list[list[str]]:
    doc = callwatch.__doc__ or ""
    return [
        # A layer's names may go on over several lines, up to the dash.
        match.group(1).split()
        for match in re.finditer(r"^\d+\. ([\w\s]+?) — ", doc, re.MULTILINE)
    ]


def layer_of(module: str) -> int:
    """The layer of a module: named in the docstring itself or by its package (the longest name
    wins); any package's `endpoints` module is in the `endpoints` layer."""
    relative = module.removeprefix("callwatch").lstrip(".")
    names = {name: index for index, layer in enumerate(_layers()) for name in layer}
    if relative.rsplit(".", 1)[-1] == "endpoints":
        return names["endpoints"]
    parts = relative.split(".")
    for size in range(len(parts), 0, -1):
        if ".".join(parts[:size]) in names:
            return names[".".join(parts[:size])]
    raise AssertionError(f"{module} is in no layer of callwatch's docstring")


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        if module != "callwatch":
            layer_of(module)


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted(
        f"{module} → {imported}"
        for module, imports in GRAPH.items()
        if module != "callwatch"
        for imported in imports
        if imported != "callwatch" and layer_of(imported) > layer_of(module)
    )
    assert upward == []


def _loops() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in GRAPH[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return loops


def test_no_import_loops() -> None:
    assert _loops() == []


def test_the_top_level_holds_few_modules() -> None:
    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(top) <= 20, top
