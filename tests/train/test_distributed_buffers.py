"""Batch-norm statistics are rank 0's on every rank after a step (two real gloo processes)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    import torch.distributed as dist
    from pqpf.train.distributed import DistributedContext

    torch.set_num_threads(1)
    ctx = DistributedContext.from_environment("cpu")
    torch.manual_seed(ctx.rank)  # each rank its own data, hence its own statistics
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    net.train()(torch.randn(4, 2, 8, 8) * (1 + ctx.rank))
    before = net[1].running_var.tolist()
    ctx.broadcast_buffers(net)
    after = {k: v.tolist() for k, v in net.state_dict().items() if k.startswith("1.running")}
    after["num_batches_tracked"] = int(net[1].num_batches_tracked)
    with open(os.path.join(sys.argv[1], f"rank{ctx.rank}.json"), "w") as fh:
        json.dump({"before": before, "after": after}, fh)
    ctx.close()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_broadcast_buffers_gives_every_rank_rank_zeros_batch_norm_statistics(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["before"] != r1["before"]  # the ranks' own batches gave different statistics
    assert r1["after"] == r0["after"]  # now rank 0's on both
    assert r0["after"]["1.running_var"] == r0["before"]  # rank 0 keeps its own
    assert r0["after"]["num_batches_tracked"] == 1
