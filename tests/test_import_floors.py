"""The package's floors: a module imports only from its own floor or lower ones, never a private name of another
module, and only ``visualization/`` imports matplotlib. Every import counts, also those inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnunet_fracture"

# lowest first; a module's floor is that of its longest listed prefix
FLOORS = (
    ("nnunet_fracture", "nnunet_fracture.environment", "nnunet_fracture.trainer_discovery",
     "nnunet_fracture.image_geometry", "nnunet_fracture.io"),
    ("nnunet_fracture.losses", "nnunet_fracture.networks", "nnunet_fracture.dataset_conversion",
     "nnunet_fracture.planning"),
    ("nnunet_fracture.evaluation", "nnunet_fracture.visualization"),
    ("nnunet_fracture.training",),
    ("nnunet_fracture.inference", "nnunet_fracture.triplanar"),
    ("nnunet_fracture.trainers", "nnunet_fracture.stock_commands", "nnunet_fracture.self_training"),
    # the shim is what nnU-Net imports to find the trainers: it stands above them
    ("nnunet_fracture.demo", "nnunet_fracture.cli", "nnunet_fracture.trainer_discovery.nnunet_fracture_trainer_shim"),
)


def floor_of(module: str) -> int:
    best, floor = "", None
    for level, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            # the package itself (its __init__: __version__) is on floor 0, not everything below it
            below = module.startswith(prefix + ".") and prefix != "nnunet_fracture"
            if (module == prefix or below) and len(prefix) > len(best):
                best, floor = prefix, level
    if floor is None:
        raise AssertionError(f"{module} is on no floor: add its package to FLOORS in {__file__}")
    return floor


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in the file (``names`` empty for ``import x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_floor_table_by_hand():
    assert floor_of("nnunet_fracture.io.plans_files") == 0
    assert floor_of("nnunet_fracture.losses.weak_box") == 1
    assert floor_of("nnunet_fracture.trainer_discovery") == 0
    assert floor_of("nnunet_fracture.trainer_discovery.nnunet_fracture_trainer_shim") == 6
    with pytest.raises(AssertionError, match="on no floor"):
        floor_of("nnunet_fracture.somewhere_new")


def test_no_import_reaches_a_higher_floor():
    upwards = [f"{module_name(path)} (floor {floor_of(module_name(path))}) line {line}: {module} "
               f"(floor {floor_of(module)})"
               for path in MODULES for line, module, _ in imports(path)
               if module.startswith("nnunet_fracture") and floor_of(module) > floor_of(module_name(path))]
    assert not upwards, "imports from a higher floor:\n" + "\n".join(upwards)


def test_no_private_name_crosses_modules():
    private = [f"{module_name(path)} line {line}: {name} from {module}"
               for path in MODULES for line, module, names in imports(path)
               if module.startswith("nnunet_fracture") and module != module_name(path)
               for name in names if name.startswith("_") and not name.startswith("__")]
    assert not private, "private names imported from another module:\n" + "\n".join(private)


def test_only_visualization_imports_matplotlib():
    users = sorted(module_name(path) for path in MODULES
                   if any(module.split(".")[0] == "matplotlib" for _, module, _ in imports(path)))
    assert users, "no module imports matplotlib: the test would pass for nothing"
    assert all(user.startswith("nnunet_fracture.visualization") for user in users), users
