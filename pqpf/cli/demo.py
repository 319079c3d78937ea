"""The end-to-end demo: every stage on a synthetic archive in the real file formats.

``python3 run_demo.py`` (or ``python -m pqpf.cli.demo``) builds a small synthetic GRAF/MRMS
archive (demo grid, 200 x 250 points at 4 km; 56 days ending 2025-06-30, the last 6 held
out) and runs, with the same command-line
entry points a user types, terrain -> MRMS remapping -> patch extraction -> training of
the ``demo`` U-Net -> inference for the inits after the training period -> verification,
then the ``diffusion_demo`` model on the U-Net's residual -> an 8-member ensemble for every
held-out init (postage stamps and GIF of the one the maps show) -> ensemble verification,
and prints the score tables and the paths of the PNGs. Each step prints the
command that does it by hand. Stages skip what already exists, so a second run retrains
nothing (it resamples the ensembles, about two minutes, so they follow the current
defaults); ``--fresh`` starts from nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pqpf.cli import (
    ensemble_inference,
    plot_graf_mrms,
    resunet_inference,
    save_patched_graf_mrms,
    save_remapped_mrms,
    terrain_height,
    train_diffusion,
    train_resunet,
    verify_ensemble,
    verify_resunet,
)
from pqpf.cli.common import non_negative_int, positive_int
from pqpf.config import Config, load_config
from pqpf.dates import format_yyyymmddhh as ymdh
from pqpf.dates import hour_range
from pqpf.errors import PqpfError
from pqpf.io.grib import read_graf
from pqpf.io.registry import Registry
from pqpf.layout import (
    ensemble_gif_path,
    ensemble_stamps_png_path,
    probs_png_path,
    registry_path,
    require_graf,
    verification_dir,
)
from pqpf.synthetic import generate_archive

__all__ = ["main", "run_demo"]

logger = logging.getLogger(__name__)


def _say(text: str) -> None:
    print(text, flush=True)


def _step(n: int, total: int, what: str, command: str, fn: Callable[[], int]) -> None:
    _say(f"\n[{n}/{total}] {what}\n      $ {command}")
    t0 = time.perf_counter()
    status = fn()
    if status:
        raise PqpfError(f"step {n} ({what}) failed with exit status {status} (the line above says why; "
                        "run_demo.py --fresh starts from nothing)")
    _say(f"      done in {time.perf_counter() - t0:.0f} s")


#: The archive ends on this day, so the held-out days (its last ``test_days``) stay the
#: same whatever ``days`` is: a longer archive adds training days before them (up to
#: ``ndays_train``'s cap of 60).
LAST_DAY = dt.date(2025, 6, 30)
#: Days of archive by default: 50 training days and 6 held-out days.
DAYS = 56
#: ``[patches] patches_per_init`` of the demo's archive. With 12 from each of 50 days the
#: training set has as many patches (about 1000, the training time) as 40 from each of 24
#: days had, but covers twice the weather regimes: 24 days were too few to learn the
#: climate of the held-out days (three times wetter), 50 days are enough (docs/calibration.md,
#: section 12).
PATCHES_PER_INIT = 12


@dataclass(frozen=True)
class _Plan:
    """The demo's dates and files: the archive, the training INIT and the held-out inits."""

    workdir: Path
    lead_h: int
    seed: int
    hparams_name: str
    start: dt.datetime
    end: dt.datetime
    first_test: dt.datetime
    last_test: dt.datetime

    @classmethod
    def make(cls, workdir: Path, days: int, lead_h: int, test_days: int, seed: int, hparams_name: str,
             last_day: dt.date = LAST_DAY) -> _Plan:
        end = dt.datetime.combine(last_day, dt.time(23))
        start = end + dt.timedelta(hours=1) - dt.timedelta(days=days)
        last_test = end - dt.timedelta(hours=lead_h)
        last_test = last_test.replace(hour=12 if last_test.hour >= 12 else 0)
        return cls(workdir, lead_h, seed, hparams_name, start, end,
                   start + dt.timedelta(days=days - test_days), last_test)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.ini"

    @property
    def cfg(self) -> list[str]:
        return ["--config", str(self.config_path)]


TOTAL_STEPS = 11
#: Members of the demo ensemble (small: sampling runs on 2 CPU cores).
ENSEMBLE_MEMBERS = 8
DIFFUSION_HPARAMS = "diffusion_demo"


def _prepare_data(plan: _Plan) -> Config:
    """Steps 1-3: the synthetic archive, the terrain file, every hour of MRMS remapped."""
    cfg, lead = plan.cfg, plan.lead_h

    def synthetic() -> int:
        generate_archive(plan.workdir, plan.start, plan.end, (lead,), grid_name="demo", seed=plan.seed,
                         patches_per_init=PATCHES_PER_INIT)
        return 0

    _step(1, TOTAL_STEPS, "synthetic GRAF, MRMS and terrain archive (GRIB2)",
          f"python -m pqpf.synthetic --out {plan.workdir} --start {ymdh(plan.start)} --end {ymdh(plan.end)} "
          f"--leads {lead} --grid demo --seed {plan.seed} --patches-per-init {PATCHES_PER_INIT}", synthetic)
    _step(2, TOTAL_STEPS, "terrain fields", f"python terrain_height.py --config {plan.config_path}",
          lambda: terrain_height.main([*cfg, "-q"]))
    _step(3, TOTAL_STEPS, "remap MRMS to the GRAF grid (every hour)",
          f"python save_remapped_mrms.py {ymdh(plan.start)} {ymdh(plan.end)} --config {plan.config_path}",
          lambda: save_remapped_mrms.main([ymdh(plan.start), ymdh(plan.end), *cfg, "-q"]))
    return load_config(plan.config_path)


def _train(plan: _Plan, config: Config, shown: dt.datetime) -> None:
    """Steps 4-6: a look at the data, the patches, the U-Net (unless already registered)."""
    cfg, lead, init = plan.cfg, plan.lead_h, ymdh(plan.first_test)
    _step(4, TOTAL_STEPS, "a look at the data (the wettest held-out hour)",
          f"python plot_graf_mrms.py {ymdh(shown)} {lead} --config {plan.config_path}",
          lambda: plot_graf_mrms.main([ymdh(shown), str(lead), *cfg, "-q"]))
    _step(5, TOTAL_STEPS, "training patches",
          f"python save_patched_graf_mrms.py {init} {lead} --config {plan.config_path}",
          lambda: save_patched_graf_mrms.main([init, str(lead), *cfg]))
    entry = Registry(registry_path(config)).entry("resunet", lead) or {}
    if entry.get("init") == init and entry.get("hparams") == plan.hparams_name:
        _say(f"\n[6/{TOTAL_STEPS}] training: the '{plan.hparams_name}' model for +{lead} h from {init} is "
             f"already in {registry_path(config)} (use --fresh to retrain)")
        return
    _step(6, TOTAL_STEPS, f"train the '{plan.hparams_name}' U-Net",
          f"python train_resunet.py {init} {lead} --hparams-name {plan.hparams_name} --config {plan.config_path}",
          lambda: train_resunet.main([init, str(lead), "--hparams-name", plan.hparams_name, "--overwrite", *cfg]))


def _infer_and_verify(plan: _Plan, config: Config, test_inits: list[dt.datetime], shown: dt.datetime) -> Path:
    """Steps 7-8: probabilities for every held-out init (maps of the wettest), verification."""
    cfg, lead = plan.cfg, plan.lead_h

    def inference() -> int:
        for t in test_inits:
            status = resunet_inference.main([ymdh(t), str(lead), *cfg, "-q", "--no-plot"])
            if status:
                return status
        return resunet_inference.main([ymdh(shown), str(lead), *cfg, "-q", "--overwrite"])  # maps

    _step(7, TOTAL_STEPS, f"inference for {len(test_inits)} held-out inits",
          f"python resunet_inference.py {ymdh(shown)} {lead} --config {plan.config_path}   (and the others)",
          inference)
    first, last = ymdh(test_inits[0]), ymdh(test_inits[-1])
    _step(8, TOTAL_STEPS, "verification against MRMS",
          f"python verify_resunet.py {first} {last} {lead} --config {plan.config_path}",
          lambda: verify_resunet.main([first, last, str(lead), *cfg, "-q"]))
    return verification_dir(config, test_inits[0], test_inits[-1], lead)


def _ensemble_inits(test_inits: list[dt.datetime], shown: dt.datetime, n_inits: int | None) -> list[dt.datetime]:
    """Every held-out init (``n_inits`` None), else the shown one and the last ``n_inits - 1`` others."""
    if n_inits is None or n_inits >= len(test_inits):
        return list(test_inits)
    others = [t for t in test_inits if t != shown]
    return sorted([shown, *others[len(others) - (n_inits - 1):]])


def _ensemble(plan: _Plan, config: Config, test_inits: list[dt.datetime], shown: dt.datetime,
              n_inits: int | None) -> Path:
    """Steps 9-11: the diffusion model, an ensemble for the held-out inits, its scores."""
    cfg, lead, init = plan.cfg, plan.lead_h, ymdh(plan.first_test)
    entry = Registry(registry_path(config)).entry("diffusion", lead) or {}
    unet = Registry(registry_path(config)).entry("resunet", lead) or {}
    if entry.get("init") == init and entry.get("hparams") == DIFFUSION_HPARAMS and \
            entry.get("unet_checkpoint") == unet.get("checkpoint"):
        _say(f"\n[9/{TOTAL_STEPS}] diffusion training: already in {registry_path(config)} (use --fresh to retrain)")
    else:
        _step(9, TOTAL_STEPS, f"train the '{DIFFUSION_HPARAMS}' diffusion model on the U-Net's residual",
              f"python train_diffusion.py {init} {lead} --hparams-name {DIFFUSION_HPARAMS} --config {plan.config_path}",
              lambda: train_diffusion.main([init, str(lead), "--hparams-name", DIFFUSION_HPARAMS, "--overwrite",
                                            *cfg]))
    chosen = _ensemble_inits(test_inits, shown, n_inits)
    first, last = ymdh(chosen[0]), ymdh(chosen[-1])

    def sample() -> int:  # resampled on every run: the stores follow the current ECC defaults
        for t in chosen:
            plots = [] if t == shown else ["--no-plot"]  # stamps and GIF of the hour the maps show
            status = ensemble_inference.main([ymdh(t), str(lead), "--members", str(ENSEMBLE_MEMBERS), *cfg, "-q",
                                              "--overwrite", *plots])
            if status:
                return status
        return 0

    every = chosen == list(test_inits)
    command = (f"python ensemble_inference.py {first} {lead} --until {last} --members {ENSEMBLE_MEMBERS} --no-plot "
               f"--config {plan.config_path}   (stamps and GIF: the same for {ymdh(shown)} without --no-plot)"
               if every else
               f"python ensemble_inference.py {ymdh(shown)} {lead} --members {ENSEMBLE_MEMBERS} --config "
               f"{plan.config_path}   (and with --no-plot for {', '.join(ymdh(t) for t in chosen if t != shown)})")
    _step(10, TOTAL_STEPS, f"{ENSEMBLE_MEMBERS}-member ensembles for {len(chosen)} held-out inits", command, sample)
    _step(11, TOTAL_STEPS, "ensemble verification against MRMS" + (
        "" if every else " (inits in between without an ensemble are skipped)"),
          f"python verify_ensemble.py {first} {last} {lead} --config {plan.config_path}",
          lambda: verify_ensemble.main([first, last, str(lead), *cfg, "-q"]))
    return ensemble_stamps_png_path(config, shown, lead)


def run_demo(workdir: Path, days: int = DAYS, lead_h: int = 6, test_days: int = 6, seed: int = 1,
             hparams_name: str = "demo", fresh: bool = False, last_day: dt.date = LAST_DAY,
             ensemble_inits: int | None = None) -> int:
    """Run every stage; return 0 on success.

    Parameters
    ----------
    workdir : Path
        Where the synthetic archive and every output go.
    days : int
        Length of the synthetic archive, which ends on ``last_day``; its last ``test_days``
        are held out for inference and verification, the rest trains the model.
    lead_h : int
        The lead time demonstrated.
    last_day : date
        The archive's last day (the held-out days end there).
    ensemble_inits : int, optional
        Held-out inits given an ensemble: all (None), else the maps' init and the last
        ``ensemble_inits - 1`` others.

    Raises
    ------
    PqpfError
        A step failed (its exit status is named).
    """
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plan = _Plan.make(workdir, days, lead_h, test_days, seed, hparams_name, last_day)
    t_all = time.perf_counter()
    _say(f"pqpf demo in {workdir}: synthetic archive {ymdh(plan.start)}..{ymdh(plan.end)}, lead {lead_h} h, "
         f"training on inits before {ymdh(plan.first_test)}, verifying "
         f"{ymdh(plan.first_test)}..{ymdh(plan.last_test)}")
    config = _prepare_data(plan)
    test_inits = [t for t in hour_range(plan.first_test, plan.last_test) if t.hour in config.patches.cycles]
    shown = _wettest(config, test_inits, lead_h)  # the held-out hour the maps show
    _train(plan, config, shown)
    vdir = _infer_and_verify(plan, config, test_inits, shown)
    stamps = _ensemble(plan, config, test_inits, shown, ensemble_inits)
    _say(f"\ndemo finished in {(time.perf_counter() - t_all) / 60:.1f} min. Pictures:")
    for png in (probs_png_path(config, shown, lead_h), vdir / "reliability.png",
                config.paths.plots_dir / f"graf_mrms_{ymdh(shown)}_{lead_h}h.png", stamps,
                ensemble_gif_path(config, shown, lead_h)):
        _say(f"  {png}")
    _say(f"scores: {vdir / 'scores.csv'}")
    return 0


def _wettest(config: Config, inits: list[dt.datetime], lead_h: int) -> dt.datetime:
    """The init whose GRAF forecast wets most of the domain (>= 0.25 mm): maps of a dry
    hour would show nothing."""

    def wet(t: dt.datetime) -> float:
        values = read_graf(require_graf(config, t, lead_h), lead_h, init=t).values
        return float(np.mean(np.nan_to_num(values) >= 0.25))

    return max(inits, key=wet)


def main(argv: Sequence[str] | None = None, script_dir: Path | None = None) -> int:
    """Entry point of ``run_demo.py``; the work directory defaults to ``demo_run`` beside
    the scripts (``script_dir``), else in the current directory."""
    parser = argparse.ArgumentParser(
        prog="run_demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=(script_dir or Path.cwd()) / "demo_run",
                        help="where the archive and outputs go (default ./demo_run)")
    parser.add_argument("--days", type=positive_int, default=DAYS,
                        help=f"days of synthetic archive, ending {LAST_DAY.isoformat()} (default {DAYS})")
    parser.add_argument("--lead", type=positive_int, default=6, help="lead time in hours (default 6)")
    parser.add_argument("--test-days", type=positive_int, default=6, help="held-out days at the end (default 6)")
    parser.add_argument("--hparams-name", default="demo", help="hyper-parameter set (default demo)")
    parser.add_argument("--seed", type=non_negative_int, default=1)
    parser.add_argument("--ensemble-inits", type=positive_int, default=None, metavar="N",
                        help="held-out inits given an ensemble (default: all of them; about 12 s each)")
    parser.add_argument("--fresh", action="store_true", help="delete the work directory first")
    args = parser.parse_args(argv)
    if args.days - args.test_days < 10:
        parser.error("need at least 10 days of training data (--days minus --test-days)")
    logging.basicConfig(level=logging.INFO, format="      %(message)s", stream=sys.stdout)
    try:
        return run_demo(args.workdir.resolve(), args.days, args.lead, args.test_days, args.seed,
                        args.hparams_name, args.fresh, ensemble_inits=args.ensemble_inits)
    except PqpfError as exc:
        print(f"run_demo.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
