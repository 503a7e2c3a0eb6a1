"""The house rules on imports, checked from the source with ``ast``.

No import cycles between imgclf's modules, and no module takes another
module's ``_private`` name (a private module itself may be imported: it is
the package's). Every import counts, at module level or inside a function.
Also a script, which CI runs before the tests::

    python tests/test_structure.py imgclf
"""

import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "imgclf"


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module an ``ImportFrom`` names, seen from ``module``."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def imports(root: pathlib.Path) -> tuple[dict[str, set[str]], list[str]]:
    """``(module -> the package's modules it imports, private names taken)``."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    private = []
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, module, is_package)
                for alias in node.names:
                    if f"{source}.{alias.name}" in files:  # a module: from . import x
                        graph[module].add(f"{source}.{alias.name}")
                    elif source in files:
                        graph[module].add(source)
                        name = alias.name
                        if name.startswith("_") and not name.startswith("__"):
                            private.append(f"{module} imports {source}.{name}")
    for module in graph:
        graph[module].discard(module)
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per group of modules that import
    each other, found by a depth-first search."""
    found, done = [], set()

    def visit(module, path, on_path):
        for target in sorted(graph[module]):
            if target in on_path:
                cycle = path[path.index(target) :] + [target]
                if not any(set(cycle) <= set(c) for c in found):
                    found.append(cycle)
            elif target not in done:
                visit(target, [*path, target], on_path | {target})
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module], {module})
    return found


def problems(root: pathlib.Path) -> list[str]:
    graph, private = imports(root)
    return [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)] + [
        f"private import: {p}" for p in private
    ]


def test_no_import_cycles_and_no_private_names_taken():
    assert PACKAGE.is_dir()
    graph, _ = imports(PACKAGE)
    assert "imgclf._base" in graph and "imgclf._params" in graph["imgclf._base"]
    assert problems(PACKAGE) == []


def test_the_check_finds_a_cycle_and_a_private_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _hidden\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n\n_hidden = 1\n")
    (pkg / "c.py").write_text("import pkg.a\nfrom . import _d\n")
    (pkg / "_d.py").write_text("")
    assert problems(pkg) == [
        "import cycle: pkg.a -> pkg.b -> pkg.c -> pkg.a",
        "private import: pkg.a imports pkg.b._hidden",
    ]


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE
    found = problems(root.resolve())
    print("\n".join(found) or f"{root}: no import cycles, no private names taken")
    sys.exit(1 if found else 0)
