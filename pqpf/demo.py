"""The end-to-end demo: every stage on a synthetic archive in the real file formats.

``python3 run_demo.py`` (or ``python -m pqpf.demo``) builds a small synthetic GRAF/MRMS
archive (demo grid, 200 x 250 points at 4 km) and runs, with the same command-line
entry points a user types, terrain -> MRMS remapping -> patch extraction -> training of
the ``demo`` U-Net -> inference for the inits after the training period -> verification,
then prints the Brier-skill table and the paths of the PNGs. Each step prints the
command that does it by hand. Stages skip what already exists, so a second run is quick;
``--fresh`` starts from nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "run_demo"]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def _say(text: str) -> None:
    print(text, flush=True)


def _step(n: int, total: int, what: str, command: str, fn: Callable[[], int]) -> None:
    _say(f"\n[{n}/{total}] {what}\n      $ {command}")
    t0 = time.perf_counter()
    status = fn()
    if status:
        raise SystemExit(f"demo: step {n} ({what}) failed with exit status {status}")
    _say(f"      done in {time.perf_counter() - t0:.0f} s")


def run_demo(workdir: Path, days: int = 30, lead_h: int = 6, test_days: int = 6, seed: int = 1,
             hparams_name: str = "demo", fresh: bool = False) -> int:
    """Run every stage; return 0 on success.

    Parameters
    ----------
    workdir : Path
        Where the synthetic archive and every output go.
    days : int
        Length of the synthetic archive; the last ``test_days`` are held out for
        inference and verification, the rest trains the model.
    lead_h : int
        The lead time demonstrated.
    """
    from pqpf.cli import (
        plot_graf_mrms, resunet_inference, save_patched_graf_mrms, save_remapped_mrms,
        terrain_height, train_resunet, verify_resunet,
    )
    from pqpf.config import load_config
    from pqpf.dates import format_yyyymmddhh as ymdh, hour_range
    from pqpf.layout import probs_png_path, registry_path, verification_dir
    from pqpf.synthetic import generate_archive

    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2025, 6, 1, 0)
    end = start + dt.timedelta(days=days) - dt.timedelta(hours=1)
    first_test = start + dt.timedelta(days=days - test_days)
    last_test = end - dt.timedelta(hours=lead_h)
    last_test = last_test.replace(hour=12 if last_test.hour >= 12 else 0)
    cfg_path = workdir / "config.ini"
    cfg = ["--config", str(cfg_path)]
    total = 8
    t_all = time.perf_counter()
    _say(f"pqpf demo in {workdir}: synthetic archive {ymdh(start)}..{ymdh(end)}, lead {lead_h} h, "
         f"training on inits before {ymdh(first_test)}, verifying {ymdh(first_test)}..{ymdh(last_test)}")

    def synthetic() -> int:
        generate_archive(workdir, start, end, (lead_h,), grid_name="demo", seed=seed)
        return 0

    _step(1, total, "synthetic GRAF, MRMS and terrain archive (GRIB2)",
          f"python -m pqpf.synthetic --out {workdir} --start {ymdh(start)} --end {ymdh(end)} "
          f"--leads {lead_h} --grid demo --seed {seed}", synthetic)
    config = load_config(cfg_path)
    _step(2, total, "terrain fields", f"python terrain_height.py --config {cfg_path}",
          lambda: terrain_height.main([*cfg, "-q"]))
    _step(3, total, "remap MRMS to the GRAF grid (every hour)",
          f"python save_remapped_mrms.py {ymdh(start)} {ymdh(end)} --config {cfg_path}",
          lambda: save_remapped_mrms.main([ymdh(start), ymdh(end), *cfg, "-q"]))
    test_inits = [t for t in hour_range(first_test, last_test) if t.hour in config.patches.cycles]
    shown = _wettest(config, test_inits, lead_h)  # the held-out hour the maps show
    _step(4, total, "a look at the data (the wettest held-out hour)",
          f"python plot_graf_mrms.py {ymdh(shown)} {lead_h} --config {cfg_path}",
          lambda: plot_graf_mrms.main([ymdh(shown), str(lead_h), *cfg, "-q"]))
    _step(5, total, "training patches", f"python save_patched_graf_mrms.py {ymdh(first_test)} {lead_h} --config {cfg_path}",
          lambda: save_patched_graf_mrms.main([ymdh(first_test), str(lead_h), *cfg]))
    from pqpf.training import read_registry

    entry = read_registry(config).get(str(lead_h), {})
    if entry.get("init") == ymdh(first_test) and entry.get("hparams") == hparams_name:
        _say(f"\n[6/{total}] training: the '{hparams_name}' model for +{lead_h} h from {ymdh(first_test)} is "
             f"already in {registry_path(config)} (use --fresh to retrain)")
    else:
        _step(6, total, f"train the '{hparams_name}' U-Net",
              f"python train_resunet.py {ymdh(first_test)} {lead_h} --hparams-name {hparams_name} --config {cfg_path}",
              lambda: train_resunet.main([ymdh(first_test), str(lead_h), "--hparams-name", hparams_name,
                                          "--overwrite", *cfg]))
    def inference() -> int:
        for t in test_inits:
            status = resunet_inference.main([ymdh(t), str(lead_h), *cfg, "-q", "--no-plot"])
            if status:
                return status
        return resunet_inference.main([ymdh(shown), str(lead_h), *cfg, "-q", "--overwrite"])  # maps

    _step(7, total, f"inference for {len(test_inits)} held-out inits",
          f"python resunet_inference.py {ymdh(shown)} {lead_h} --config {cfg_path}   (and the others)",
          inference)
    _step(8, total, "verification against MRMS",
          f"python verify_resunet.py {ymdh(test_inits[0])} {ymdh(test_inits[-1])} {lead_h} --config {cfg_path}",
          lambda: verify_resunet.main([ymdh(test_inits[0]), ymdh(test_inits[-1]), str(lead_h), *cfg, "-q"]))
    vdir = verification_dir(config, test_inits[0], test_inits[-1], lead_h)
    _say(f"\ndemo finished in {(time.perf_counter() - t_all) / 60:.1f} min. Pictures:")
    for png in (probs_png_path(config, shown, lead_h), vdir / "reliability.png",
                config.paths.plots_dir / f"graf_mrms_{ymdh(shown)}_{lead_h}h.png"):
        _say(f"  {png}")
    _say(f"scores: {vdir / 'scores.csv'}")
    return 0


def _wettest(config: object, inits: list[dt.datetime], lead_h: int) -> dt.datetime:
    """The init whose GRAF forecast wets most of the domain (>= 0.25 mm): maps of a dry
    hour would show nothing."""
    import numpy as np

    from pqpf.io.grib import read_graf
    from pqpf.layout import require_graf

    def wet(t: dt.datetime) -> float:
        values = read_graf(require_graf(config, t, lead_h), lead_h, init=t).values  # type: ignore[arg-type]
        return float(np.mean(np.nan_to_num(values) >= 0.25))

    return max(inits, key=wet)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo_run",
                        help="where the archive and outputs go (default ./demo_run)")
    parser.add_argument("--days", type=int, default=30, help="days of synthetic archive (default 30)")
    parser.add_argument("--lead", type=int, default=6, help="lead time in hours (default 6)")
    parser.add_argument("--test-days", type=int, default=6, help="held-out days at the end (default 6)")
    parser.add_argument("--hparams-name", default="demo", help="hyper-parameter set (default demo)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="delete the work directory first")
    args = parser.parse_args(argv)
    if args.days - args.test_days < 10:
        parser.error("need at least 10 days of training data (--days minus --test-days)")
    logging.basicConfig(level=logging.INFO, format="      %(message)s", stream=sys.stdout)
    return run_demo(args.workdir.resolve(), args.days, args.lead, args.test_days, args.seed,
                    args.hparams_name, args.fresh)


if __name__ == "__main__":
    sys.exit(main())
