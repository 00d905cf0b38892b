"""The package's layout: packages named for the pipeline's stages, a few shared modules at the top, imports only down."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segcheck"
# Lowest first: a module may import from its own layer or a lower one, never from a higher one.
LAYERS = ("errors", "atomic", "strict", "data", "config", "models", "measure", "peers", "cases", "gate", "results", "tune", "cli", "plugin")
SHARED = {"errors", "atomic", "strict"}  # the top-level modules every layer may use


def layer_of(module: str) -> str:
    """segcheck.measure.layers -> measure; segcheck.errors -> errors."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(text: str, module: str, is_package: bool = False) -> set:
    """The segcheck modules `text` (the source of `module`) imports, absolute: relative imports resolved,
    function-local ones included."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source == "segcheck":
                found |= {f"segcheck.{alias.name}" for alias in node.names}
            elif source.startswith("segcheck."):
                found.add(source)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("segcheck.")}
    return found


def upward_imports(path: Path, text: str | None = None) -> list:
    """'<file> imports <module>' for each module of a higher layer that `path` imports."""
    module = module_name(path)
    mine = LAYERS.index(layer_of(module)) if module != "segcheck" else 0
    targets = imported(path.read_text() if text is None else text, module, path.name == "__init__.py")
    return [f"{path.relative_to(PACKAGE.parent)} imports {t}" for t in sorted(targets) if LAYERS.index(layer_of(t)) > mine]


def test_the_top_level_holds_packages_named_for_the_pipeline_and_at_most_three_modules():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(modules) == SHARED and len(modules) <= 3, modules
    assert set(packages) == set(LAYERS) - SHARED, packages
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "\n" not in doc.strip(), f"segcheck/{name}/__init__.py must say its job in one line"


def test_imports_only_go_down():
    upward = [line for path in sorted(PACKAGE.rglob("*.py")) for line in upward_imports(path)]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_the_layout_check_sees_an_upward_import_behind_relative_dots():
    probe = PACKAGE / "data" / "kinds.py"
    assert upward_imports(probe, "from ..plugin import session\nfrom ..errors import SegcheckError\n") == [
        "segcheck/data/kinds.py imports segcheck.plugin"]
    assert upward_imports(probe, "def f():\n    from segcheck.measure.metrics import ConfusionMatrix\n") == [
        "segcheck/data/kinds.py imports segcheck.measure.metrics"]
    assert upward_imports(PACKAGE / "plugin" / "hooks.py", "from ..data import loaders\n") == []


def test_every_shipped_test_judges_one_registered_check_and_every_check_has_its_test():
    from segcheck.gate.checks import BY_TEST, CHECK_ORDER, CHECKS

    shipped = {node.name for path in (PACKAGE / "plugin" / "suite").glob("test_*.py")
               for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    assert shipped == set(BY_TEST)
    assert len(CHECK_ORDER) == len(set(CHECK_ORDER)) == sum(len(c.names()) for c in CHECKS)
