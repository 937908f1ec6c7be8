"""The product card's layering: `service` imports `model`, never `training`; `model` neither;
and no module-level import cycle anywhere in the three packages."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "training", "service")
# What each package may import of the others.
ALLOWED = {"model": set(), "service": {"model"}, "training": {"model"}}


def _modules(package: str) -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / package).rglob("*.py")
        # __main__ modules run their command when imported.
        if "assets" not in path.parts and path.name != "__main__.py"
    )


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(result.stdout.split())


def test_every_module_imports_only_the_layers_below_it():
    for package in ("model", "service"):
        modules = _modules(package)
        loaded = _imported_after("; ".join(f"import {name}" for name in modules))
        assert set(modules) <= loaded
        others = {name.split(".")[0] for name in loaded} & set(PACKAGES) - {package}
        assert others <= ALLOWED[package], f"{package} imports {others - ALLOWED[package]}"


def _module_level_imports(path: Path, name: str) -> set[str]:
    """Repository modules `path` imports when it is loaded (not inside functions or
    TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(child, ast.Import):
                found |= {alias.name for alias in child.names}
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in child.names}
    return {item for item in found if item.split(".")[0] in PACKAGES}


def _source(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_no_module_level_import_cycle():
    names = [name for package in PACKAGES for name in _modules(package)]
    graph = {
        name: sorted((_module_level_imports(_source(name), name) & set(names)) - {name})
        for name in names
    }
    state: dict[str, str] = {}

    def visit(trail: list[str]) -> None:
        name = trail[-1]
        state[name] = "open"
        for other in graph[name]:
            if state.get(other) == "open":
                cycle = [*trail[trail.index(other) :], other]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if other not in state:
                visit([*trail, other])
        state[name] = "done"

    for name in names:
        if name not in state:
            visit([name])
