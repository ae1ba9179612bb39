"""The layout rule, read from the source: dependencies point down only (views -> ttc.app -> ttc.engine ->
models, tasks; ttc.tools -> engine and app), the engine imports neither Streamlit nor plotly, and no code
outside models/ compares a family's (or task's) name."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import ROOT

# folder -> module prefixes it must not import
FORBIDDEN = {
    "models": ("ttc", "streamlit", "plotly", "views"),
    "tasks": ("ttc", "models", "streamlit", "plotly", "views"),
    "ttc/engine": ("ttc.app", "ttc.tools", "streamlit", "plotly", "views"),
    "ttc/app": ("ttc.tools", "streamlit", "views"),
    "ttc/tools": ("views",),
    "views": ("ttc.tools",),
}


def _imports(path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                pkg = path.relative_to(ROOT).parent.parts
                base = ".".join(pkg[: len(pkg) - node.level + 1])
                out.append(f"{base}.{node.module}" if node.module else base)
            else:
                out.append(node.module)
    return out


# the one exception: models.registry is a leaf module (it imports nothing of the project), the registry helper the
# task registry shares with families, solvers and backward modes
ALLOWED = {"tasks": ("models.registry",)}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_downward(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for mod in _imports(path):
            if mod in ALLOWED.get(folder, ()):
                continue
            if any(mod == p or mod.startswith(p + ".") for p in FORBIDDEN[folder]):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_the_rule_catches_a_violation(tmp_path):
    """The check itself works: a file that imports upward is reported."""
    f = tmp_path / "engine_module.py"  # never written into the source tree
    f.write_text("import streamlit\nfrom ttc.app import plots\n")
    mods = _imports(f)
    assert [m for m in mods if m.startswith(FORBIDDEN["ttc/engine"])] == ["streamlit", "ttc.app"]


NAME_COMPARISON = re.compile(
    r"""(family|task)\s*(==|!=)\s*["']|["'](explicit|recursive|deq|ebm|memory|prefix_sums|addition|mazes)["']\s*"""
    r"""(==|!=)|(==|!=|\bin)\s*\(?\s*["'](explicit|recursive|deq|prefix_sums|addition|mazes)["']""")


def test_no_family_or_task_name_is_compared_outside_models():
    hits = []
    files = [ROOT / "app.py", *(ROOT / "ttc").rglob("*.py"), *(ROOT / "views").rglob("*.py")]
    for path in files:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if NAME_COMPARISON.search(code):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits


def test_the_name_check_catches_a_comparison():
    assert NAME_COMPARISON.search('if ck.family == "deq":')
    assert NAME_COMPARISON.search("x = 'conv2d' if task == 'mazes' else 'conv1d'")
    assert not NAME_COMPARISON.search("if ck.model.has_solver:")


# Outside models/, no code names a shipped family's own vocabulary as a string: its name, the series, maps and
# memory modes it declares (figures, tables and pages ask the family class). "memory" is also a common word (a
# bench group, a page, a CLI command) and is left out. What is still allowed, and why:
VOCABULARY_ALLOWED = {
    ("ttc/engine/train.py", "recursive"): "TrainConfig's default family for `python -m ttc train`",
    ("ttc/engine/train.py", "grad_norm"): "the training step event's gradient norm, not the EBM's series",
}


def _family_vocabulary() -> set[str]:
    from models import families

    words = set()
    for fam in families():
        words |= {fam.family_name, *fam.extra_series, *fam.extra_maps, *fam.memory_modes}
    return words - {"memory"}


def _string_literals(path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in the file that is not a docstring."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def _vocabulary_hits(paths, words) -> list[str]:
    hits = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        for line, value in _string_literals(path):
            if value in words and (rel, value) not in VOCABULARY_ALLOWED:
                hits.append(f"{rel}:{line}: {value!r}")
    return hits


def test_no_family_vocabulary_outside_models():
    files = [ROOT / "app.py", *(ROOT / "ttc").rglob("*.py"), *(ROOT / "views").rglob("*.py")]
    hits = _vocabulary_hits(files, _family_vocabulary())
    assert not hits, hits


def test_the_vocabulary_check_catches_a_series_a_map_and_a_mode(tmp_path):
    f = tmp_path / "page.py"
    f.write_text('"""a docstring may say energy"""\nx = t.series["energy"]\ny = t.maps["read"]\n'
                 'z = MODE_STYLES["jfb"]\nw = {"group": "memory"}\n')
    assert _vocabulary_hits([f], _family_vocabulary()) == ["page.py:2: 'energy'", "page.py:3: 'read'",
                                                           "page.py:4: 'jfb'"]


def test_the_registry_module_stays_a_leaf():
    """models.registry, which tasks/ may import, imports nothing of the project."""
    mods = _imports(ROOT / "models" / "registry.py")
    assert not [m for m in mods if m.split(".")[0] in ("models", "tasks", "ttc", "views")], mods
