"""The library's structure (`tools/structure.py`): the rules of the layout hold for `ue_lib`, and
the measures behind them find what they should on small hand-made packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("structure", REPO / "tools" / "structure.py")
structure = importlib.util.module_from_spec(spec)
sys.modules["structure"] = structure
spec.loader.exec_module(structure)


def package(root: Path, files: dict[str, str]) -> Path:
    """A package named ue_lib under `root` with these files (relative paths -> text)."""
    for name, text in files.items():
        path = root / "ue_lib" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "ue_lib"


def test_the_library_keeps_its_layout():
    lines, broken = structure.report()
    assert not broken, "\n".join(lines)
    places = structure.places(structure.imports(structure.modules()))
    assert places["opqn"] == ["opqn/", "profiles.py", "quantize.py"]
    assert places["sgml"] == ["losses/", "profiles.py", "sgml/"]
    assert places["objects"] == ["objects/", "profiles.py"]


def test_circles_count_function_level_and_relative_imports(tmp_path):
    root = package(tmp_path, {"__init__.py": "", "a.py": "from .b import x\n",
                              "b.py": "def f():\n    from . import c\n",
                              "c.py": "from ue_lib.a import y\n", "d.py": "import ue_lib.a\n"})
    edges = structure.imports(structure.modules(root))
    assert edges["ue_lib.a"] == {"ue_lib.b"} and edges["ue_lib.b"] == {"ue_lib.c"}
    assert structure.circles(edges) == [["ue_lib.a", "ue_lib.b", "ue_lib.c"]]


def test_imports_up_the_layers_and_between_neighbouring_systems_are_found(tmp_path):
    root = package(tmp_path, {"__init__.py": "", "losses.py": "from .profiles import P\n",
                              "profiles.py": "from .opqn import s\n",
                              "opqn/__init__.py": "from ..sgml import t\nfrom ..universal import u\n",
                              "sgml/__init__.py": "", "universal/__init__.py": ""})
    edges = structure.imports(structure.modules(root))
    assert structure.upward(edges) == ["ue_lib.losses -> ue_lib.profiles",
                                       "ue_lib.opqn -> ue_lib.sgml"]


def test_long_functions_and_the_places_that_mention_a_system(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    root = package(tmp_path, {"__init__.py": "", "long.py": f"@staticmethod\ndef f():\n{body}\n",
                              "io.py": "# the search time of OPQN's indexes\n",
                              "runner.py": "from .opqn import settings\n",
                              "opqn/__init__.py": "", "opqn/settings.py": "quantize_dim = 192\n",
                              "data/__init__.py": "SCENES = 'symbols and scenes'\n"})
    known = structure.modules(root)
    assert structure.functions(known)[0] == (82, "ue_lib.long:f")  # decorator and def included
    found = structure.places(structure.imports(known), root)
    assert found["opqn"] == ["io.py", "opqn/", "runner.py"] and found["objects"] == []


@pytest.mark.parametrize("text, names", [("see notebook 06", True), ("06_compressed_retrieval", True),
                                         ("a notebook's name", False)])
def test_a_core_module_that_names_a_notebook_is_found(tmp_path, text, names):
    root = package(tmp_path, {"__init__.py": "", "io.py": f'"""{text}"""\n'})
    assert bool(structure.core_naming_notebooks(structure.modules(root))) == names
