#!/usr/bin/env python3
"""Peak memory of patch extraction for 10 and 40 inits: it must stay flat.

Builds a synthetic archive (demo grid, 30 days, lead 6 h), remaps its MRMS, then runs
save_patched_graf_mrms.py in a fresh process twice: with a training window of 5 days
(10 inits at 00 and 12 UTC) and of 20 days (40 inits; a few are dropped at split
boundaries), and prints each run's peak resident memory (ru_maxrss of the child), the
number of patches written and the ratio. Baseline: the 10-init run. The extraction
streams one init at a time into the patch files, so the ratio should stay near 1 while
the patch count grows about fourfold.

    python bench/patches_memory.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_in_new_process(cmd: list[str]) -> tuple[float, str]:
    """Run ``cmd`` inside a tiny wrapper process so ru_maxrss is that run's own peak."""
    wrapper = (
        "import resource, subprocess, sys;"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stderr.write(r.stderr);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.exit(r.returncode)"
    )
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode:
        raise SystemExit(res.stderr[-2000:])
    peak = int(res.stdout.strip().splitlines()[-1])
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 1024.0), res.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the archive here (default: a temp dir)")
    args = parser.parse_args()

    from pqpf.cli import save_remapped_mrms, terrain_height
    from pqpf.synthetic import generate_archive

    start, end = dt.datetime(2025, 6, 1), dt.datetime(2025, 6, 30, 23)
    init = dt.datetime(2025, 6, 30, 0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        config = generate_archive(root, start, end, (6,), grid_name="demo", seed=2)
        cfg = ["--config", str(config.source), "-q"]
        terrain_height.main(cfg)
        save_remapped_mrms.main([start.strftime("%Y%m%d%H"), end.strftime("%Y%m%d%H"), *cfg])
        results = []
        for days in (5, 20):
            text = config.source.read_text()
            text = "\n".join(f"ndays_train = {days}" if line.startswith("ndays_train") else line
                             for line in text.splitlines())
            config.source.write_text(text + "\n")
            cmd = [sys.executable, str(ROOT / "save_patched_graf_mrms.py"), init.strftime("%Y%m%d%H"), "6",
                   "--config", str(config.source), "--overwrite"]
            peak_mb, log = _peak_in_new_process(cmd)
            summary = [line for line in log.splitlines() if "inits used" in line][-1]
            used = summary.split("inits used ")[1].split("/")[0]
            patches = sum(int(n) for n in re.findall(r"(?:train|validation|test) (\d+) \(effective", summary))
            results.append((days, int(used), patches, peak_mb))
    print("\npeak memory of save_patched_graf_mrms.py (demo grid 200x250, 64x64 patches)")
    print(f"{'window':>8}  {'inits':>5}  {'patches':>7}  {'peak RSS':>9}  {'all patches':>11}  vs 10-init baseline")
    base = results[0][3]
    per_patch_mb = (7 * 64 * 64 * 4 + 6 * 64 * 64 * 2) / 2**20  # features, MRMS, quality + float16 reference
    for days, used, patches, peak in results:
        label = "baseline" if peak == base else f"{peak / base:.2f}x memory for {patches / results[0][2]:.1f}x patches"
        print(f"{days:>6} d  {used:>5d}  {patches:>7d}  {peak:>6.0f} MB  {patches * per_patch_mb:>8.0f} MB  {label}")
    print("(all patches: what holding every patch in memory until the end would need on top)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
