"""Create the project's virtual environment and re-run a command inside it.

Used by the README's two commands (``run_demo.py`` and ``run_tests.py``), which must work
on a fresh machine that has only Python. Standard library only: it runs before any
dependency is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["ensure_venv_and_reexec"]

ROOT = Path(__file__).resolve().parent.parent


def _venv_python(env_dir: Path) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return env_dir / sub / ("python.exe" if os.name == "nt" else "python")


def _stamp(extras: str) -> str:
    digest = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "requirements/ci-constraints.txt"):
        path = ROOT / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv_and_reexec(extras: str = "test") -> None:
    """Make sure we run inside ``.venv`` with pqpf installed; re-exec there if needed.

    ``PQPF_VENV`` chooses another environment directory; ``PQPF_NO_VENV=1`` uses the
    current interpreter as it is (for users who manage their own environment).
    """
    if os.environ.get("PQPF_NO_VENV") == "1":
        return
    env_dir = Path(os.environ.get("PQPF_VENV", ROOT / ".venv")).resolve()
    python = _venv_python(env_dir)
    if Path(sys.prefix).resolve() == env_dir:
        return
    if not python.exists():
        print(f"[pqpf] creating virtual environment {env_dir}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    stamp_file = env_dir / ".pqpf-installed"
    want = _stamp(extras)
    if not stamp_file.exists() or stamp_file.read_text().strip() != want:
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        cmd = [
            str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
            "-c", str(ROOT / "requirements" / "ci-constraints.txt"), "-e", target,
        ]
        print(f"[pqpf] installing pqpf and its dependencies into {env_dir} (first run takes a minute or two)",
              flush=True)
        subprocess.run(cmd, check=True)
        stamp_file.write_text(want)
    os.execv(str(python), [str(python), *sys.argv])
