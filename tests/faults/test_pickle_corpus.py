"""The malicious-pickle corpus (tests/faults/pickle_corpus.py) against the patch-file
loader: no payload runs, no case crashes or hangs the interpreter, each is one clean
InputFileError line; and a forged file given to a plot script is exit 1 and one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pqpf.layout import patch_file_path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def test_no_malicious_patch_file_runs_code_crashes_or_escapes_the_error_policy(tmp_path):
    out = tmp_path / "corpus.json"
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("pickle_corpus.py")), "--json",
                           str(out)], capture_output=True, text=True, timeout=900, env=ENV, cwd=ROOT)
    print(proc.stdout)
    results = json.loads(out.read_text())
    assert len(results) >= 50
    assert not [name for name, r in results.items() if r["payload_ran"]], proc.stdout
    not_refused = {name: r for name, r in results.items() if r["outcome"] != "refused"}
    assert not_refused == {}, proc.stdout
    assert proc.returncode == 0


def test_a_forged_patch_file_given_to_the_samples_plot_is_one_line_and_exit_1(tmp_path):
    """The V8 structured-dtype file that made plot_graf_mrms_samples.py die with SIGSEGV."""
    from faults.pickle_corpus import build_corpus, patch_file
    from mrms_archive import write_config

    config = write_config(tmp_path / "site", None)
    target = patch_file_path(config, "train", __import__("datetime").datetime(2025, 7, 4, 12), 3)
    target.parent.mkdir(parents=True, exist_ok=True)
    where, obj = build_corpus(tmp_path / "PAYLOAD_RAN")["V8 structured dtype with an object field (SIGSEGV before)"]
    target.write_bytes(patch_file(where, obj))
    code = ("import sys\nfrom pqpf.cli.plot_graf_mrms_samples import main\n"
            f"sys.exit(main(['2025070412', '3', '--config', {str(config.source)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=ENV, cwd=ROOT)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"plot_graf_mrms_samples.py: error: {target}: refused to load: "
                                  "dtype '|V8' in a dtype is not a plain number or bool type")
