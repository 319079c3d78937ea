#!/usr/bin/env python3
"""Many inits in one process (``--until/--every``) against one call per init, on the demo grid.

Baseline: ``resunet_inference.py INIT LEAD`` started once per init, as a Slurm array or a
shell loop does it (each call starts Python, imports torch, loads the model and the
terrain). Candidate: one ``resunet_inference.py FIRST LEAD --until LAST --every H`` call
(the model and terrain loaded once). Both rewrite the same probability files
(``--overwrite``, no PNG), so the work per init is the same; the script prints the wall
time per init of each and the ratio candidate / baseline, and checks that both wrote
identical probabilities.

    python bench/inference_many.py --demo-dir demo_run [--inits 12] [--threads 1]

Run it alone on the machine: the ratio is only meaningful without other load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", type=Path, required=True, help="a directory run_demo.py has filled")
    parser.add_argument("--inits", type=int, default=12, help="how many of the held-out inits (default 12)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each call (default 1)")
    return parser.parse_args(argv)


def _digest(paths: list[Path]) -> str:
    """One digest of the probability arrays (netCDF headers hold creation times)."""
    import netCDF4
    import numpy as np

    h = hashlib.sha256()
    for path in paths:
        with netCDF4.Dataset(path) as ds:
            h.update(np.ma.filled(ds.variables["prob_exceed"][...], np.nan).tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    from pqpf.config import load_config
    from pqpf.layout import probs_path

    args = _parse_args(argv)
    config_path = args.demo_dir / "config.ini"
    if not config_path.is_file():
        raise SystemExit(f"--demo-dir {args.demo_dir}: no config.ini (run run_demo.py first)")
    config = load_config(config_path)
    names = sorted(config.paths.probs_dir.glob("*_probs.nc"))
    if not names:
        raise SystemExit(f"--demo-dir {args.demo_dir}: no probabilities files in {config.paths.probs_dir}")
    lead = int(names[0].name.split("_")[1].rstrip("h"))
    inits = sorted({dt.datetime.strptime(p.name[:10], "%Y%m%d%H") for p in names})[:args.inits]
    every = int((inits[1] - inits[0]).total_seconds() // 3600) if len(inits) > 1 else 12
    files = [probs_path(config, t, lead) for t in inits]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PQPF_NO_VENV": "1"}
    common = [str(lead), "--config", str(config_path), "--overwrite", "--no-plot", "-q", "--threads", str(args.threads)]
    script = str(ROOT / "resunet_inference.py")

    t0 = time.perf_counter()
    for init in inits:
        subprocess.run([sys.executable, script, init.strftime("%Y%m%d%H"), *common], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    separate = time.perf_counter() - t0
    digest_separate = _digest(files)

    t0 = time.perf_counter()
    subprocess.run([sys.executable, script, inits[0].strftime("%Y%m%d%H"), *common, "--until",
                    inits[-1].strftime("%Y%m%d%H"), "--every", str(every)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    together = time.perf_counter() - t0
    same = _digest(files) == digest_separate

    n = len(inits)
    print(f"{n} inits of the demo grid ({config_path}), +{lead} h, {args.threads} thread(s) per call")
    print(f"  one call per init (baseline):  {separate:6.1f} s, {separate / n:5.2f} s per init")
    print(f"  one call --until --every {every}:  {together:6.1f} s, {together / n:5.2f} s per init")
    print(f"  ratio {together / separate:.2f} (lower is better); identical probabilities: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
