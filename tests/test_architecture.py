"""The package's shape: layers, imports and sizes that the architecture promises
(ARCHITECTURE.md). These are rules of the code base, checked on every run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pqpf"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))

#: Modules allowed over 500 lines, with the reason (ARCHITECTURE.md repeats it).
LONG_MODULES: dict[str, str] = {
    "pqpf.io.probs_grib": "the GRIB2 probability product: WMO code-table keys, packing choices and a decode-and-"
                          "compare check of every message written; a third of it documents those choices",
    "pqpf.stitching": "the stitcher: window geometry, exact weight sums and the batched window loop, with the "
                      "method and its measured speed documented in the module",
}


def _name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_no_sibling_import_inside_functions_outside_the_cli():
    """Deferred imports of torch or matplotlib keep --help fast; deferred imports of
    pqpf's own modules would hide the dependency graph."""
    offenders = []
    for path in MODULES:
        if path.parts[-2] == "cli":
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("pqpf"):
                        offenders.append(f"{path.relative_to(ROOT)}:{inner.lineno} from {inner.module}")
                    elif isinstance(inner, ast.Import) and any(a.name.startswith("pqpf") for a in inner.names):
                        offenders.append(f"{path.relative_to(ROOT)}:{inner.lineno} import pqpf...")
    assert not offenders, "\n".join(offenders)


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function without its docstring (the signature and body)."""
    length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        length -= first.end_lineno - first.lineno + 1  # type: ignore[operator]
    return length


def test_functions_are_at_most_80_lines():
    """Code lines, not counting the docstring: a numpy-style docstring of a public
    function with many parameters is documentation, not complexity."""
    long = []
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = _code_lines(node)
                if length > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {length} lines")
    assert not long, "\n".join(long)


def test_modules_are_at_most_500_lines_unless_listed():
    long = [f"{p.relative_to(ROOT)}: {len(p.read_text().splitlines())} lines" for p in MODULES
            if len(p.read_text().splitlines()) > 500 and _name(p) not in LONG_MODULES]
    assert not long, "\n".join(long)


def test_every_module_declares_its_public_names():
    missing = []
    for path in MODULES:
        if path.name in ("__init__.py", "__main__.py") or path.parts[-2] == "cli" or path.name.startswith("_"):
            continue
        tree = _tree(path)
        if not any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
                   for n in tree.body):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, missing


@pytest.mark.parametrize("module", [
    "pqpf.stages.inference", "pqpf.stages.verify", "pqpf.predict", "pqpf.verify.verifier", "pqpf.plot",
    "pqpf.io.checkpoint", "pqpf.io.registry",
])
def test_inference_verification_and_plotting_import_nothing_from_training(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m == 'pqpf.train' or m.startswith('pqpf.train.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    # pqpf.train.schedules is the registry of schedule names (torch-free, no training code)
    assert out.stdout.strip() in ("[]", "['pqpf.train', 'pqpf.train.schedules']"), out.stdout


def test_the_site_config_is_taken_only_by_the_stage_layer():
    """Only stages/, cli/ and the path module (layout) take the whole Config; core modules
    take arrays and their own settings."""
    allowed_dirs = {"stages", "cli"}
    allowed = {"pqpf.config", "pqpf.layout", "pqpf.synthetic", "pqpf.synthetic.archive",
               "pqpf.synthetic.cli"}
    offenders = []
    for path in MODULES:
        if path.parts[-2] in allowed_dirs or _name(path) in allowed:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module == "pqpf.config":
                if any(a.name == "Config" for a in node.names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_choice_lists_come_from_the_registries_that_implement_them():
    from pqpf.config import InferenceConfig, MrmsConfig
    from pqpf.features import PAD_MODES
    from pqpf.hparams import load_hparams
    from pqpf.model.norms import NORMS
    from pqpf.ordinal import EDGE_WEIGHT_SCHEMES
    from pqpf.remapping import METHODS
    from pqpf.train.schedules import SCHEDULES

    for name in METHODS:
        assert MrmsConfig(remap_method=name).remap_method == name
    for name in PAD_MODES:
        assert InferenceConfig(pad_mode=name).pad_mode == name
    import dataclasses

    tiny = load_hparams("tiny")
    for name in NORMS:
        dataclasses.replace(tiny.model, norm=name)
    for name in EDGE_WEIGHT_SCHEMES:
        dataclasses.replace(tiny, loss=name)
    for name in SCHEDULES:
        dataclasses.replace(tiny, lr_schedule=name)
    with pytest.raises(ValueError, match="one of " + ", ".join(SCHEDULES)):
        dataclasses.replace(tiny, lr_schedule="step")
