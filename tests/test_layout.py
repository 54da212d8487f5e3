"""The package's layering: dependencies point down only (counting imports inside functions),
nothing imports the CLI, and no file grows past what one holds in one's head."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "reverie"
# lower floors first; a package may import only from floors below its own
FLOORS = [{"errors"}, {"config", "progress"}, {"models"}, {"memory", "world", "snapshots"},
          {"sleep", "gate"}, {"lifecycle"}, {"serve", "bench"}, {"cli"}]
SIDEWAYS = {("bench", "serve")}   # `reverie bench serve` measures the service under load
MAX_LINES = 400


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "reverie" and len(parts) > 1 else None


def graph() -> dict:
    edges: dict = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        mine = package_of(".".join(rel.parts))
        if mine is None or mine == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                theirs = package_of(name)
                if theirs and theirs != mine:
                    edges.setdefault(mine, set()).add(theirs)
    return edges


def floor(package: str) -> int:
    return next(i for i, f in enumerate(FLOORS) if package in f)


def test_every_package_has_a_floor():
    found = {p.stem for p in ROOT.iterdir() if p.suffix == ".py" and p.stem != "__init__"}
    found |= {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert found == set().union(*FLOORS)


def test_there_is_no_import_cycle():
    edges = graph()
    seen, stack = set(), []

    def visit(p):
        assert p not in stack, f"import cycle: {' -> '.join(stack[stack.index(p):] + [p])}"
        if p in seen:
            return
        stack.append(p)
        for q in sorted(edges.get(p, ())):
            visit(q)
        stack.pop()
        seen.add(p)
    for p in sorted(edges):
        visit(p)


def test_dependencies_point_down_only():
    bad = [(a, b) for a, deps in graph().items() for b in deps
           if floor(b) >= floor(a) and (a, b) not in SIDEWAYS]
    assert bad == []
    edges = graph()
    assert edges.get("models", set()) <= {"config", "errors", "progress"}
    assert not any("cli" in deps for deps in edges.values())   # the top floor


def test_no_file_exceeds_the_limit():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
