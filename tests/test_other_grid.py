"""A model tried on another model's real grid (issue 10 item 7), the way a user does it:
tools/nwp_as_graf.py stages the real HRRR 11-12 h precipitation as a GRAF file, then
terrain_height.py and resunet_inference.py --allow-other-grid run on it."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trainkit
import xarray as xr

from pqpf.grid import graf_like_grid
from pqpf.hparams import load_hparams
from pqpf.io.grib import read_graf
from pqpf.layout import graf_laptop_path
from pqpf.stages.train import train_resunet

from .conftest import HRRR_CROP

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("nwp_as_graf", ROOT / "tools" / "nwp_as_graf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PQPF_CONFIG="")
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_a_model_runs_on_the_real_hrrr_grid_staged_as_graf(tmp_path, real_data, capsys):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path, n=(96, 16, 16), grid=graf_like_grid("demo"))
    train_resunet(config, trainkit.INIT, trainkit.LEAD, load_hparams("tiny"), device="cpu", max_epochs=8)
    source = read_graf(real_data(HRRR_CROP), 12)
    cfg = ["--config", str(config.source)]
    assert _tool().main([str(real_data(HRRR_CROP)), "12", "--flat-terrain", *cfg, "-q"]) == 0
    assert capsys.readouterr().out.strip() == "2020121400"  # the source's own init
    staged = read_graf(graf_laptop_path(config, source.init_time, 12), 12, init=source.init_time)
    assert staged.grid == source.grid
    np.testing.assert_allclose(staged.values, np.nan_to_num(source.values), atol=6e-4)  # 0.001-mm packing

    assert _run(ROOT / "terrain_height.py", *cfg, "-q").returncode == 0
    refused = _run(ROOT / "resunet_inference.py", "2020121400", "12", *cfg, "--no-plot")
    assert refused.returncode == 1 and "--allow-other-grid" in refused.stderr.splitlines()[-1]
    # what a killed earlier run left in the output folder goes (its writer's pid is gone)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    config.paths.probs_dir.mkdir(parents=True, exist_ok=True)
    stale = config.paths.probs_dir / f".x_probs.nc.tmp-{socket.gethostname()}-{dead.stdout.strip()}-0a1b2c3d"
    stale.write_bytes(b"half")
    res = _run(ROOT / "resunet_inference.py", "2020121400", "12", *cfg, "--no-plot", "--allow-other-grid")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"nearest lead's ({trainkit.LEAD} h)" in res.stderr and not stale.exists()
    assert f"trained on {graf_like_grid('demo').describe()}, to another grid: {source.grid.describe()}" in res.stderr
    with xr.open_dataset(res.stdout.split()[0]) as ds:
        assert (ds.sizes["y"], ds.sizes["x"]) == source.grid.shape
        np.testing.assert_allclose(ds["graf_precipitation"].values, staged.values, atol=1e-6)
        p = ds["prob_exceed"].sel(threshold=0.25).values
    graf = staged.values
    assert p[graf >= 2.5].mean() > p[graf == 0].mean() + 0.2  # the trained model follows the real rain
    assert np.all(np.diff(ds["prob_exceed"].values, axis=0) <= 1e-6)  # non-increasing in the threshold
