"""compressm_jax's modules import one way: no module imports one that imports it back."""

import ast
from pathlib import Path

import compressm_jax

PACKAGE = Path(compressm_jax.__file__).parent


def _relative_imports(module: str) -> set[str]:
    """The sibling modules ``module`` imports anywhere in its body (functions included)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_no_import_cycle_between_modules():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    graph = {module: _relative_imports(module) & set(modules) for module in modules}

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(
            nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt}))
            for nxt in graph[start]
        )

    cycles = [module for module in modules if reaches(module, module)]
    assert not cycles, {module: graph[module] for module in cycles}


def test_selective_layers_do_not_need_reduce():
    assert "reduce" not in _relative_imports("selective")
