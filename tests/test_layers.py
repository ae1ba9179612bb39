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


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_downward(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for mod in _imports(path):
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
