"""The import architecture, checked on the source with `ast` (no project module is imported).

* No stage module imports another stage's module (components/<stage>.py, components/<stage>_lib.py or
  components/<stage>/...): what passes between stages lives in contract modules (components.model_dir,
  components.blessing, components.translator, components.measurement, serving.signatures), and a contract module
  imports no stage module (else a stage would reach another one through it).
* No circular imports among the project's modules, function-level imports included.
* No model family is compared as a string outside models/ (what a family offers is `Family.traits`), benchmarks
  included.
* The packages import one way (docs/INTERFACES.md): models/ imports no other project package, serving/ imports
  neither models/ nor components/, no library package imports pipelines/ or benchmarks/.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("components", "models", "pipelines", "serving", "benchmarks")
FAMILY_NAMES = ("unit", "munit", "ugatit")  # the built-in families (models.FAMILY_NAMES, read without importing)
# Where no family name may be compared: everywhere but the families themselves and the registry (models/). Code that
# genuinely differs per family outside models/ (the benchmarks' official torch code) looks it up in a table keyed
# by family name.
FAMILY_NAME_CHECK_DIRS = ("components", "pipelines", "serving", "benchmarks")


def python_files(root: str, packages=PACKAGES) -> list[str]:
  """Paths (relative to `root`) of every .py file of `packages`."""
  paths = []
  for package in packages:
    for directory, dirs, files in os.walk(os.path.join(root, package)):
      dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
      paths += [os.path.relpath(os.path.join(directory, f), root) for f in sorted(files) if f.endswith(".py")]
  return paths


def module_name(path: str) -> str:
  """components/train_lib.py -> components.train_lib; models/munit/__init__.py -> models.munit."""
  parts = path[:-3].split(os.sep)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


@dataclasses.dataclass(frozen=True)
class Edge:
  source: str
  target: str
  line: int


def imports_of(path: str, source: str, modules: set[str]) -> list[Edge]:
  """Every import in `source` (module level and inside functions) that names a project module.

  `from a.b import c` is an edge to a.b.c when that is a module, else to a.b; `import a.b` to a.b.
  """
  name = module_name(path)
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  edges = []
  for node in ast.walk(ast.parse(source, path)):
    targets = []
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative import
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    for target in targets:
      while target and target not in modules:  # `import a.b.c` of a non-module attribute: its module
        target = target.rpartition(".")[0]
      if target and target != name:
        edges.append(Edge(name, target, node.lineno))
  return edges


def import_graph(root: str = ROOT, packages=PACKAGES) -> tuple[set[str], list[Edge]]:
  """(project modules, import edges between them) of the tree at `root`."""
  paths = python_files(root, packages)
  modules = {module_name(p) for p in paths}
  edges = []
  for path in paths:
    with open(os.path.join(root, path), encoding="utf-8") as f:
      edges += imports_of(path, f.read(), modules)
  return modules, edges


def stage_of(module: str, stages: set[str]) -> str | None:
  """The stage a module belongs to: components.<stage>, components.<stage>_lib, components.<stage>.*; else None."""
  parts = module.split(".")
  if parts[0] != "components" or len(parts) < 2:
    return None
  name = parts[1][:-len("_lib")] if parts[1].endswith("_lib") else parts[1]
  return name if name in stages else None


def stages_of(root: str = ROOT) -> set[str]:
  """The pipeline's stages: every components/<stage>_lib.py and every components/<stage>/ package."""
  components = os.path.join(root, "components")
  stages = set()
  for entry in os.listdir(components):
    if entry.endswith("_lib.py"):
      stages.add(entry[:-len("_lib.py")])
    elif os.path.isfile(os.path.join(components, entry, "__init__.py")):
      stages.add(entry)
  return stages


def stage_violations(modules: set[str], edges: list[Edge], stages: set[str]) -> list[str]:
  """Imports from a stage module into another stage's module, or from a non-stage components module (a contract
  or shared helper) into any stage module."""
  problems = []
  for edge in edges:
    target_stage = stage_of(edge.target, stages)
    if target_stage is None or not edge.source.startswith("components."):
      continue
    source_stage = stage_of(edge.source, stages)
    if source_stage is None:
      problems.append(f"{edge.source} (line {edge.line}) imports the stage module {edge.target}: a contract or "
                      "shared module must not depend on a stage")
    elif source_stage != target_stage:
      problems.append(f"{edge.source} (line {edge.line}) imports {edge.target}: stage {source_stage} must not "
                      f"import stage {target_stage}; move what they share into a contract module")
  return sorted(problems)


def cycles(modules: set[str], edges: list[Edge]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan), each sorted; sorted list."""
  graph = {m: sorted({e.target for e in edges if e.source == m}) for m in modules}
  index, low, on_stack, stack, found = {}, {}, set(), [], []
  counter = [0]

  def visit(node):  # iterative enough for this graph's depth (a few hundred modules)
    index[node] = low[node] = counter[0]
    counter[0] += 1
    stack.append(node)
    on_stack.add(node)
    for nxt in graph[node]:
      if nxt not in index:
        visit(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in on_stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for module in sorted(modules):
    if module not in index:
      visit(module)
  return sorted(found)


def family_name_comparisons(source: str, path: str) -> list[str]:
  """`<expr> == "munit"`, `"ugatit" != x`, `x in ("unit", ...)` and the like: a family name as a string compared
  with something (a `match` case on a family name counts too)."""
  found = []
  for node in ast.walk(ast.parse(source, path)):
    operands = []
    if isinstance(node, ast.Compare):
      operands = [node.left] + list(node.comparators)
    elif isinstance(node, ast.match_case):
      operands = [node.pattern]
    for operand in operands:
      for leaf in ast.walk(operand):
        if isinstance(leaf, ast.Constant) and leaf.value in FAMILY_NAMES:
          found.append(f"{path}:{node.lineno}: compares the family name {leaf.value!r}")
  return found


# --- the checks on this tree -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph():
  return import_graph()


def test_no_stage_module_imports_another_stage(graph):
  modules, edges = graph
  stages = stages_of()
  assert {"ingest", "validate", "train", "evaluate", "export", "infra_validate", "push", "import_official",
          "import_model"} <= stages
  assert stage_violations(modules, edges, stages) == []


def test_no_circular_imports(graph):
  modules, edges = graph
  assert cycles(modules, edges) == []


def test_packages_import_one_way(graph):
  """models/ -> nothing of ours; serving/ -> neither models/ nor components/; components/, models/ and serving/
  never import pipelines/ (benchmarks, like tests, may import anything: nothing imports them)."""
  modules, edges = graph
  top = lambda module: module.split(".")[0]  # noqa: E731
  wrong = sorted(f"{e.source} -> {e.target}" for e in edges
                 if (top(e.source) == "models" and top(e.target) != "models")
                 or (top(e.source) == "serving" and top(e.target) in ("models", "components"))
                 or (top(e.target) == "pipelines" and top(e.source) in ("components", "models", "serving"))
                 or (top(e.target) == "benchmarks" and top(e.source) != "benchmarks"))
  assert wrong == []


def test_no_family_name_is_compared_outside_models():
  found = []
  for path in python_files(ROOT, FAMILY_NAME_CHECK_DIRS):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      found += family_name_comparisons(f.read(), path)
  assert found == []


def test_family_names_here_are_the_registry_names():
  with open(os.path.join(ROOT, "models", "__init__.py"), encoding="utf-8") as f:
    match = re.search(r"^FAMILY_NAMES = (\(.*?\))$", f.read(), re.M)
  assert ast.literal_eval(match.group(1)) == FAMILY_NAMES


def test_in_training_evaluation_measures_with_evaluates_defaults():
  """The trainer measures with components.measurement.MeasureOptions; evaluate with EvaluateConfig: same defaults,
  so in-training numbers equal `python -m components.evaluate` on the same images."""
  from components import evaluate_lib, measurement  # pylint: disable=import-outside-toplevel
  defaults = {f.name: f.default for f in dataclasses.fields(evaluate_lib.EvaluateConfig)}
  options = dataclasses.asdict(measurement.MeasureOptions())
  assert options == {name: defaults[name] for name in options}


# --- the checkers on hand-made trees (each must catch what it is for) ------------------------------------------
def _tree(tmp_path, files: dict) -> str:
  for path, text in files.items():
    full = tmp_path / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
  return str(tmp_path)


def test_checkers_catch_a_stage_import_a_cycle_inside_a_function_and_a_name_comparison(tmp_path):
  root = _tree(tmp_path, {
      "components/__init__.py": "",
      "components/train_lib.py": "def f():\n  from components import evaluate_lib\n",
      "components/evaluate_lib.py": "from components import model_dir\nimport components.export\n",
      "components/export.py": "",
      "components/export_lib.py": "",
      "components/model_dir.py": "from components.train_lib import f\n",
      "serving/__init__.py": "",
      "serving/a.py": "from . import b\n",
      "serving/b.py": "def g():\n  import serving.a\n",
      "serving/c.py": "x = family == 'munit' or y in ('a', 'ugatit')\n",
  })
  modules, edges = import_graph(root, ("components", "serving"))
  assert stages_of(root) == {"train", "evaluate", "export"}
  assert stage_violations(modules, edges, stages_of(root)) == [
      "components.evaluate_lib (line 2) imports components.export: stage evaluate must not import stage export; "
      "move what they share into a contract module",
      "components.model_dir (line 1) imports the stage module components.train_lib: a contract or shared module "
      "must not depend on a stage",
      "components.train_lib (line 2) imports components.evaluate_lib: stage train must not import stage evaluate; "
      "move what they share into a contract module"]
  assert cycles(modules, edges) == [
      ["components.evaluate_lib", "components.model_dir", "components.train_lib"], ["serving.a", "serving.b"]]
  with open(os.path.join(root, "serving", "c.py"), encoding="utf-8") as f:
    assert family_name_comparisons(f.read(), "serving/c.py") == [
        "serving/c.py:1: compares the family name 'munit'", "serving/c.py:1: compares the family name 'ugatit'"]


def test_the_domain_names_have_one_definition_and_the_tensorflow_free_stages_copy_it_exactly():
  from components import data, ingest_sources, validate_lib  # pylint: disable=import-outside-toplevel
  from models import api  # pylint: disable=import-outside-toplevel
  from serving import signatures  # pylint: disable=import-outside-toplevel
  assert api.DOMAINS == ("a", "b") and api.DIRECTIONS == ("a2b", "b2a")
  assert data.DOMAINS is api.DOMAINS  # imported, not redefined
  assert ingest_sources.DOMAINS == validate_lib.DOMAINS == api.DOMAINS  # copies (no TensorFlow import there)
  assert signatures.DIRECTIONS == api.DIRECTIONS  # serving does not import models/
