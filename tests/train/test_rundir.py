"""The run folder's lock: one training per run, and what a killed one left is removed."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pqpf.errors import PqpfError
from pqpf.train.rundir import RunDir

HOLD = """
import sys, time
from pathlib import Path
from pqpf.train.rundir import RunDir
lock = RunDir(Path(sys.argv[1])).lock()
(Path(sys.argv[1]) / ".best.pt.tmp-{host}-{pid}-0a1b2c3d".format(host=__import__("socket").gethostname(),
                                                                 pid=__import__("os").getpid())).write_bytes(b"half")
print("held", flush=True)
time.sleep(60)
"""


def test_a_held_run_is_refused_naming_the_holder_and_a_killed_holders_leftovers_go(tmp_path):
    run = tmp_path / "resunet_2025120100_6h"
    run.mkdir()
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(PqpfError) as err:
            RunDir(run).lock()
        assert f"in use by another training (pid {child.pid} on {socket.gethostname()} since" in str(err.value)
        assert len(list(run.glob(".best.pt.tmp-*"))) == 1  # the live holder's temporary stays
    finally:
        os.kill(child.pid, signal.SIGKILL)  # as a Slurm time limit or kill -9 does
        child.wait()
    time.sleep(0.05)
    lock = RunDir(run).lock()  # the kernel dropped the dead holder's lock ...
    try:
        assert not list(run.glob(".best.pt.tmp-*"))  # ... and its half checkpoint is gone
    finally:
        lock.release()
