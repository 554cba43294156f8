"""The package's layers: folders whose imports point one way (docs/package.md), and no import cycle."""
import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "wscl"
# Lowest first: a module may import from its own layer and the layers before it, never from a later one.
LAYERS = ("core", "settings", "data", "method", "run", "tracking", "study", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every wscl module ``path`` imports, at the top or inside a function (``from wscl.x import name``
    counts as ``wscl.x.name`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("wscl")}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import; the package imports absolutely"
            if not (node.module or "").startswith("wscl"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found & known


def import_graph() -> nx.DiGraph:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in files.items():
        graph.add_node(name)
        for target in imported_modules(path, set(files)):
            if target != name and not name.startswith(target + "."):  # a package's own __init__ is no edge
                graph.add_edge(name, target)
    return graph


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return None  # the package root (its version) and `python -m wscl`
    return parts[1]


def test_every_module_lives_in_a_layer_folder():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert not loose, f"modules outside a layer folder: {loose}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS)


def test_the_import_graph_has_no_cycle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_imports_point_from_later_layers_to_earlier_ones():
    wrong = []
    for source, target in import_graph().edges:
        a, b = layer_of(source), layer_of(target)
        if a and b and LAYERS.index(b) > LAYERS.index(a):
            wrong.append(f"{source} -> {target}")
    assert not wrong, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_the_checker_sees_a_backward_import(tmp_path, monkeypatch):
    """The rule above would catch the method importing from the study level."""
    fake = tmp_path / "wscl"
    for layer in ("method", "study"):
        (fake / layer).mkdir(parents=True)
        (fake / layer / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "method" / "wake.py").write_text("from wscl.study.report import build_report\n")
    (fake / "study" / "report.py").write_text("from wscl.method import wake\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = import_graph()
    assert ("wscl.method.wake", "wscl.study.report") in graph.edges
    assert list(nx.simple_cycles(graph))
