"""The library's structure, measured from its source with `ast` (nothing is imported or run):

    python tools/structure.py                 # the report; exit status 1 when a rule is broken
    python tools/structure.py OTHER/ue_lib    # another checkout's package (e.g. before a change)

* the longest functions (a function is at most 80 lines, decorators and docstring included);
* import circles among `ue_lib` modules, counting every import (module level, inside
  functions, under `if TYPE_CHECKING`);
* imports that run up the layers: the shared core < the main paper's system (`universal`) <
  the three neighbouring systems (`opqn`, `sgml`, `objects`, which never import one another) <
  the run machinery;
* for each neighbouring system, the top-level places of `ue_lib` (a file or a first-level
  folder) that mention it: import from its folder, or name it in their text (code, docstrings
  and comments) by the words of its vocabulary below;
* core modules that name a notebook ("notebook 06", "06_compressed_retrieval").
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ue_lib"
MAX_LINES = 80
SYSTEMS = ("universal", "opqn", "sgml", "objects")
RUN_MACHINERY = ("profiles", "spec", "runfolder", "runner", "sweep", "check", "cli", "bench", "book",
                 "own_images", "quantize")  # quantize: the old public path of OPQN's codebooks, re-exported
# what counts as a mention of each neighbouring system (case-insensitive)
VOCABULARY = {
    "opqn": r"opqn|quantiz|product.quantization",
    "sgml": r"sgml|soft.binomial|granularit|manandhar",
    "objects": r"ue_lib\.objects|objects_|object.embedding|sceneset|scene_|spliced|detector|chen, davis",
}
NOTEBOOK_NAME = r"notebooks?\s+0\d|\b0\d_[a-z]+_[a-z_]+"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: file} of every module of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _target(name: str, node: ast.ImportFrom, known: dict) -> list[str]:
    if node.level:
        base = name.split(".")
        if not known[name].name == "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    out = []
    for alias in node.names:  # `from . import x` or `from .pkg import submodule`
        if f"{module}.{alias.name}" in known:
            out.append(f"{module}.{alias.name}")
        elif module in known:
            out.append(module)
    return out


def imports(known: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the ue_lib modules it imports anywhere in its code}."""
    edges = {}
    for name, path in known.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                found.update(_target(name, node, known))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
        edges[name] = found - {name}
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> tuple[int, str]:
    """(layer, system) of a module: 0 core, 1 the main paper's system, 2 a neighbouring
    system, 3 the run machinery."""
    top = module.split(".")[1] if "." in module else ""
    if top in RUN_MACHINERY:
        return 3, top
    if top == "universal":
        return 1, top
    if top in SYSTEMS:
        return 2, top
    return 0, "core"


def upward(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in edges.items():
        for b in targets:
            (la, sa), (lb, sb) = layer(a), layer(b)
            if lb > la or (la == lb == 2 and sa != sb):
                out.append(f"{a} -> {b}")
    return sorted(out)


def functions(known: dict[str, Path]) -> list[tuple[int, str]]:
    """(lines, module:function) of every function, longest first."""
    out = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                out.append((node.end_lineno - start + 1, f"{name}:{node.name}"))
    return sorted(out, reverse=True)


def places(edges: dict[str, set[str]], root: Path = ROOT) -> dict[str, list[str]]:
    """{system: the top-level places of the package that mention it}."""
    tops = sorted(p for p in root.iterdir() if (p.suffix == ".py" or p.is_dir())
                  and p.name != "__pycache__")
    out = {}
    for system, words in VOCABULARY.items():
        pattern = re.compile(words, re.IGNORECASE)
        package = f"{root.name}.{system}"
        found = []
        for p in tops:
            files = [p] if p.is_file() else sorted(p.rglob("*.py"))
            place = f"{root.name}.{p.stem}"
            imports = any(t == package or t.startswith(package + ".")
                          for m, targets in edges.items() if m == place or m.startswith(place + ".")
                          for t in targets)
            if imports or any(pattern.search(f.read_text()) for f in files):
                found.append(p.name + ("/" if p.is_dir() else ""))
        out[system] = found
    return out


def core_naming_notebooks(known: dict[str, Path]) -> list[str]:
    """The core's modules whose text names a notebook."""
    pattern = re.compile(NOTEBOOK_NAME, re.IGNORECASE)
    return [name for name, path in known.items()
            if layer(name)[0] == 0 and pattern.search(path.read_text())]


def report(root: Path = ROOT) -> tuple[list[str], bool]:
    """The report's lines, and whether a rule is broken."""
    known = modules(root)
    edges = imports(known)
    longest = functions(known)
    found = {"circles": circles(edges), "upward": upward(edges), "places": places(edges, root),
             "core names a notebook": core_naming_notebooks(known)}
    lines = [f"{len(known)} modules, {sum(len(v) for v in edges.values())} import edges",
             "longest functions: " + ", ".join(f"{n} ({n_lines} lines)" for n_lines, n in longest[:3])]
    lines += [f"import circle of {len(c)}: {', '.join(c)}" for c in found["circles"]]
    lines += [f"import up the layers: {e}" for e in found["upward"]]
    lines += [f"{system}: {len(where)} places: {', '.join(where)}"
              for system, where in found["places"].items()]
    lines += [f"the core names a notebook: {name}" for name in found["core names a notebook"]]
    broken = bool(longest[0][0] > MAX_LINES or found["circles"] or found["upward"]
                  or any(len(v) > 3 for v in found["places"].values())
                  or found["core names a notebook"])
    return lines + ["structure: " + ("rules broken" if broken else "ok")], broken


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    lines, broken = report(Path(argv[0]).resolve() if argv else ROOT)
    print("\n".join(lines))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
