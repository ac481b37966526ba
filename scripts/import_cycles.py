"""Count import circles in the project's packages and check that the core imports no domain.

A circle is a strongly connected component of more than one module in the graph of every import
(module level and inside functions, ``TYPE_CHECKING`` blocks included) between the modules of
``api/``, ``knowledge/``, ``feedback/`` and ``bot/``. ``from pkg import name`` counts as an import of
``pkg.name`` when that is a module, else of ``pkg``. Importing a module also runs its packages'
``__init__`` files, but those edges are not counted: a circle is one the code wrote.

The core (``api/db.py``, ``api/settings.py``, ``api/errors.py``, ``api/clock.py``,
``api/timewindows.py``, ``api/migrations/env.py``) imports no domain (``knowledge``, ``feedback``, ``bot``, a sub-package of
``api``), not even through a top-level helper of ``api``.

    python scripts/import_cycles.py [--budget N] [--core-budget N] [--root DIR]

prints each circle and the core's domain imports; exits 1 when there are more circles than the
budget or more core imports of a domain than the core budget (default 0).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGES = ("api", "knowledge", "feedback", "bot")
CORE = ("api.db", "api.settings", "api.errors", "api.clock", "api.timewindows", "api.migrations.env")
EXCLUDED_DIRS = ("api/migrations/versions",)
DEFAULT_BUDGET = 1


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if any(rel.startswith(excluded + "/") for excluded in EXCLUDED_DIRS):
                continue
            modules[module_name(root, path)] = path
    return modules


def _resolve_relative(current: str, is_package: bool, level: int, target: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(candidate: str) -> None:
        # "import a.b.c" names a.b.c; fall back to the longest enclosing module we know.
        while candidate and candidate not in modules:
            candidate = candidate.rpartition(".")[0]
        if candidate and candidate != name:
            found.add(candidate)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(name, is_package, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                add(submodule if submodule in modules else base)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = find_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (import graphs can be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            if successors:
                successor = successors.pop(0)
                if successor not in graph:
                    continue
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, sorted(graph[successor])))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    found = [component for component in strongly_connected(graph) if len(component) > 1]
    return sorted(found, key=lambda component: (-len(component), component))


def is_domain(module: str) -> bool:
    """A module of a domain package: knowledge, feedback, bot, or a sub-package of api."""
    top, _, rest = module.partition(".")
    if top != "api":
        return True
    return "." in rest and not module.startswith("api.migrations.")


def reachable(graph: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in graph.get(todo.pop(), ()):
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def core_violations(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """(core module, module it imports that is a domain or leads to one). A core module may import
    the core, top-level helpers of api that themselves reach no domain, and third-party code."""
    found = []
    for core in CORE:
        for imported in graph.get(core, ()):
            if imported in CORE or imported == "api":
                continue
            if is_domain(imported) or any(is_domain(m) for m in reachable(graph, imported)):
                found.append((core, imported))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="most circles allowed")
    parser.add_argument("--core-budget", type=int, default=0,
                        help="most core imports of a domain allowed (0: the rule; more only while moving there)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    if args.budget < 0 or args.core_budget < 0:
        parser.error("--budget and --core-budget must be 0 or more")
    if not (args.root / "api").is_dir():
        parser.error(f"{args.root} holds no api/ package")

    graph = import_graph(args.root)
    found = circles(graph)
    violations = core_violations(graph)
    for number, component in enumerate(found, 1):
        print(f"circle {number} ({len(component)} modules): {' '.join(component)}")
    for core, imported in violations:
        print(f"core module {core} imports {imported}")
    print(f"{len(found)} import circle(s) in {len(graph)} modules (budget {args.budget}); "
          f"{len(violations)} core import(s) of a domain")
    return 1 if len(found) > args.budget or len(violations) > args.core_budget else 0


if __name__ == "__main__":
    sys.exit(main())
