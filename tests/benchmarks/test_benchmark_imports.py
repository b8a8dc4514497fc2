"""Every name the benchmark scripts import from the package exists: their imports sit inside functions (a fast
``--help``), so a moved helper breaks a script only when it runs, hours into a benchmark."""
from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def _submodule(module, name: str) -> bool:
    return hasattr(module, "__path__") and importlib.util.find_spec(f"{module.__name__}.{name}") is not None


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_package_names_a_benchmark_imports_exist(script):
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nnunet_fracture"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or _submodule(module, alias.name), \
                    f"{script.name}:{node.lineno}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nnunet_fracture"):
                    importlib.import_module(alias.name)
