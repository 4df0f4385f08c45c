"""The package's floors follow the data path: every module imports only its own floor and
the floors below it (README, Architecture), at module level or inside a function."""

import ast
from pathlib import Path

import boltzflow

# lowest first; a top-level module or subpackage of boltzflow → its floor
FLOORS = [
    {"errors", "domains", "geometry", "units", "numerics", "io", "threads", "catalog"},
    {"flows", "energy"},
    {"coordinates", "sampling", "analysis"},
    {"systems", "peptides"},
    {"system_builder", "reference"},
    {"training"},
    {"runs", "examples"},
    {"hpc", "cli"},
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}
PACKAGE = Path(boltzflow.__file__).parent


def imported_parts(path: Path) -> set:
    """The boltzflow parts (first name below ``boltzflow``) a module imports, anywhere in it."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                package = list(module[:-1])
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                names = [target[0]] if target else [alias.name for alias in node.names]
            elif node.module and node.module.split(".")[0] == "boltzflow":
                names = node.module.split(".")[1:2] or [alias.name for alias in node.names]
            else:
                continue
            parts.update(names)
        elif isinstance(node, ast.Import):
            parts.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("boltzflow.") and alias.name.count(".") >= 1)
    return parts


def test_every_part_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.stem != "__init__"}
    assert parts <= set(FLOOR), sorted(parts - set(FLOOR))


def test_no_module_imports_a_floor_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).parts
        if relative[0] in ("__init__.py", "system_files"):
            continue
        own = relative[0].removesuffix(".py")
        for part in imported_parts(path) - {own}:
            if part in FLOOR and FLOOR[part] > FLOOR[own]:
                upward.append(f"{'/'.join(relative)} imports {part}")
    assert not upward, upward
