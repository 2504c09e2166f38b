"""The package's shape: layers without import cycles, small modules, a light ``import``.

Every import counts (module level, inside functions, under ``TYPE_CHECKING``): a lazy import
that closes a circle is still a circle a reader has to hold in their head.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "etherealfabric"

#: the layers, lowest first; a module may import only from its own layer or lower ones
LAYERS = [
    {"errors", "states", "config"},
    {"define"},
    {"hashing"},
    {"plan"},
    {"store"},
    {"journal"},
    {"backends"},
    {"run"},
    {"observe"},
    {"workflow", "testing"},
    {"ui"},
    {"cli", "__init__", "__main__"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["etherealfabric", *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every in-package module that ``name`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(name, path, set(modules)):
            graph.add_edge(name, target)
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"module {module} belongs to no layer; add its folder to LAYERS")


def test_no_import_cycles_between_modules() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{a} -> {b}"
        for a, b in import_graph().edges
        if _layer(b) > _layer(a) and not (b == "etherealfabric" and a.count(".") == 0)
    ]
    assert upward == [], "imports that point up the layers:\n" + "\n".join(upward)


def test_no_package_level_cycles() -> None:
    packages = nx.DiGraph()
    for a, b in import_graph().edges:
        pa, pb = a.split(".")[:2], b.split(".")[:2]
        if pa != pb:
            packages.add_edge(".".join(pa), ".".join(pb))
    cycles = list(nx.simple_cycles(packages))
    assert cycles == [], cycles


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_over_500_lines(module: str) -> None:
    lines = _modules()[module].read_text().count("\n")
    assert lines <= 500, f"{module} has {lines} lines; split it by job"


def test_import_is_light() -> None:
    code = (
        "import sys, etherealfabric; heavy = [m for m in ('networkx', 'sqlite_utils', 'numpy', "
        "'pandas', 'cloudpickle', 'dask', 'celery', 's3fs', 'fsspec', 'rich', 'click', "
        "'prometheus_client', 'tenacity') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
