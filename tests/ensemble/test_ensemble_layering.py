"""The ensemble verification and plotting modules keep the architecture's promises: nothing from
training, no torch (verification runs where no network does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("module", ["pqpf.stages.verify_ensemble", "pqpf.io.ensemble_file", "pqpf.plot.ensemble",
                                    "pqpf.cli.verify_ensemble"])
def test_ensemble_verification_imports_neither_training_nor_torch(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.startswith('pqpf.train') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
