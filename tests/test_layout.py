"""The code's layout keeps its promises (docs/design.md §2): no import cycle among treadlab's
modules, no module importing another module's private names, kernels' NumPy references
independent of the production code, every kernel a trio, and only justified imports inside
functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("acquisition", "kernels", "pipeline", "config")

#: Imports that stay inside functions, and why (docs/design.md §2).
LAZY_OK = {
    "matplotlib": "heavy (~0.5 s) and needs its backend chosen first; only for reports",
    "distributed": "heavy (~1 s); only when a batch runs on a cluster",
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out["treadlab." + ".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """``(node, imported module, [names])`` of every import of a treadlab module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("treadlab."):
                    yield node, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if not mod.startswith("treadlab."):
                continue
            names = [a.name for a in node.names]
            for n in names:  # "from package import module"
                if f"{mod}.{n}" in MODULES:
                    yield node, f"{mod}.{n}", []
            yield node, mod, [n for n in names if f"{mod}.{n}" not in MODULES]


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        tree_nodes = set()
        if top_level_only:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            tree_nodes = {id(n) for n in tree.body}
        for node, mod, _ in _imports(name, path):
            if top_level_only and id(node) not in tree_nodes:
                continue
            if mod in MODULES and mod != name:
                graph[name].add(mod)
    return graph


def _find_cycle(graph) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_modules_are_found():
    assert "treadlab.acquisition.archive" in MODULES
    assert "treadlab.pipeline.cli" in MODULES
    assert len(MODULES) > 40


def test_no_import_cycle():
    """Counting imports inside functions too: a cycle hidden in a function is still a cycle."""
    cycle = _find_cycle(_graph(top_level_only=False))
    assert cycle is None, " -> ".join(cycle)


def test_no_private_name_crosses_a_module():
    bad = []
    for name, path in MODULES.items():
        for node, mod, names in _imports(name, path):
            if mod == name:
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {mod} {private}")
    assert not bad, "\n".join(bad)


def test_production_never_imports_a_kernel_reference_and_references_stay_independent():
    bad = []
    for name, path in MODULES.items():
        refs = [mod for _, mod, _ in _imports(name, path)
                if mod.startswith("treadlab.kernels._") and mod.endswith("_ref")]
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("_") and leaf.endswith("_ref"):
            # a reference uses NumPy and shared plain definitions, never production code
            prod = [mod for _, mod, _ in _imports(name, path)
                    if mod.startswith("treadlab.kernels.") and not mod.endswith("_common")
                    and not mod.rsplit(".", 1)[-1].startswith("_")]
            bad += [f"{name} imports {m}" for m in prod]
        else:
            bad += [f"{name} imports {m}" for m in refs]
    assert not bad, "\n".join(bad)


def test_every_kernel_has_its_trio():
    kernels = ROOT / "kernels"
    for pyx in sorted(kernels.glob("_*_cy.pyx")):
        stem = pyx.name[1:-len("_cy.pyx")]
        assert (kernels / f"_{stem}_ref.py").exists(), f"kernels/_{stem}_ref.py is missing"
        assert (kernels / f"{stem}.py").exists(), f"kernels/{stem}.py is missing"


def test_imports_inside_functions_are_the_justified_ones():
    bad = []
    for name, path in MODULES.items():
        if name == "treadlab.pipeline.cli":
            continue  # the CLI imports each command's library on use (fast --help)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = [node.module or ""]
                else:
                    continue
                for mod in mods:
                    if mod.split(".")[0] not in LAZY_OK:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {mod}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_reference_to_documents_outside_the_repository(folder):
    """Sections cited in code point at the project's own docs/ pages."""
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")) + sorted((ROOT / folder).rglob("*.pyx")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(s in line for s in ("DESIGN §", "METRICS §", "NOTES.md", "DESIGN.md",
                                       "METRICS.md", "../shared/")):
                bad.append(f"{path.relative_to(ROOT)}:{i}")
    assert not bad, "\n".join(bad)


#: Who may import whom (docs/design.md §2.3): a module of the key's package imports nothing
#: from the listed packages.
FORBIDDEN = {
    "treadlab.config": ("treadlab.acquisition", "treadlab.kernels", "treadlab.pipeline"),
    "treadlab.kernels": ("treadlab.acquisition", "treadlab.pipeline"),
    "treadlab.acquisition": ("treadlab.pipeline",),
    "treadlab.acquisition.archive": ("treadlab.acquisition.sources",
                                     "treadlab.acquisition.capture",
                                     "treadlab.acquisition.sim", "treadlab.acquisition.io"),
    "treadlab.acquisition.sources": ("treadlab.acquisition.capture", "treadlab.acquisition.sim",
                                     "treadlab.acquisition.io"),
    "treadlab.acquisition.io": ("treadlab.acquisition.capture", "treadlab.acquisition.sim",
                                "treadlab.acquisition.sources"),
}


def test_dependencies_point_one_way():
    bad = []
    for name, path in MODULES.items():
        for package, forbidden in FORBIDDEN.items():
            if name != package and not name.startswith(package + "."):
                continue
            for node, mod, _ in _imports(name, path):
                if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} -> {mod}")
    assert not bad, "\n".join(sorted(set(bad)))
