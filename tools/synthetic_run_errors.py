#!/usr/bin/env python3
"""How GRAF's per-run errors of a synthetic archive move the reliability of the forecasts.

The synthetic GRAF run of an init is displaced from the truth by a position error and a
timing error, drawn once per init for the whole domain (``pqpf/synthetic/weather.py``).
No input of the network shows them. This prints, for every init from BEGIN to END that has
a probabilities file and remapped MRMS, the run's displacement ``D`` (km) and timing
error, and the forecasts >= ``--high`` against the events observed there. It then pools
the inits by ``D`` class. Observed over forecast below 1 means over-confident. The seed
and weather parameters are those the archive was written with (``--seed``, default the
demo's 1). docs/calibration.md, section 14 has the demo's numbers.

Example (the demo's held-out days)::

    python tools/synthetic_run_errors.py 2025062500 2025063012 6 --config demo_run/config.ini
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence

import numpy as np

from pqpf.cli.common import add_init_range_lead, build_parser, checked_range_lead, load_config_from_args, run_cli
from pqpf.dates import format_yyyymmddhh
from pqpf.layout import mrms_remapped_path
from pqpf.ordinal import reaches
from pqpf.stages.common import ScoringWeights, inits_with_probabilities, read_probabilities_and_mrms
from pqpf.synthetic.weather import run_errors

logger = logging.getLogger("synthetic_run_errors")

THRESHOLDS_MM = (0.25, 1.0, 2.5)
#: Displacement classes (km): below 30, 30-45, from 45.
CLASS_EDGES_KM = (30.0, 45.0)


def _parser() -> argparse.ArgumentParser:
    parser = build_parser("synthetic_run_errors.py", __doc__.split("\n\n")[0], None)
    add_init_range_lead(parser)
    parser.add_argument("--seed", type=int, default=1, help="the archive's seed (default 1, the demo's)")
    parser.add_argument("--high", type=float, default=0.6, help="forecasts counted (default >= 0.6)")
    return parser


def _run(args: argparse.Namespace) -> int:
    config = load_config_from_args(args)
    lead = checked_range_lead(args, config)
    weights = ScoringWeights(config.mrms.min_quality)  # verification's points and events
    rows = []
    for init in inits_with_probabilities(config, args.begin, args.end, lead):
        if not mrms_remapped_path(config, init + dt.timedelta(hours=lead)).is_file():
            continue
        probs, mrms = read_probabilities_and_mrms(config, init, lead)
        _, good = weights(probs.grid, mrms.precipitation_mm, mrms.quality)
        sums = []
        for k, t in zip(probs.index(THRESHOLDS_MM), THRESHOLDS_MM):
            high = good & (probs.prob[k] >= args.high)
            sums.append((int(high.sum()), float(probs.prob[k][high].sum()),
                         float(reaches(mrms.precipitation_mm[high], t).sum())))
        err = run_errors(args.seed, init, lead)
        rows.append((init, err.displacement_km, err.tau_h, sums))
        print(f"{format_yyyymmddhh(init)}  D {err.displacement_km:6.1f} km  timing {err.tau_h:+5.2f} h  "
              + "  ".join(f"{t:g} mm: {n:6d} pts obs/fcst {o / f if f else float('nan'):5.2f}"
                          for t, (n, f, o) in zip(THRESHOLDS_MM, sums)))
    if not rows:
        logger.error("no init from %s to %s has a probabilities file and remapped MRMS",
                     format_yyyymmddhh(args.begin), format_yyyymmddhh(args.end))
        return 1
    d = np.array([r[1] for r in rows])
    print(f"{len(rows)} inits: mean D {d.mean():.1f} km; forecasts >= {args.high:g}, observed over forecast events:")
    bounds = (0.0, *CLASS_EDGES_KM, np.inf)
    for lo, hi in zip(bounds, bounds[1:]):
        sel = [r for r in rows if lo <= r[1] < hi]
        cells = []
        for k, t in enumerate(THRESHOLDS_MM):
            f, o = sum(r[3][k][1] for r in sel), sum(r[3][k][2] for r in sel)
            cells.append(f"{t:g} mm {o / f if f else float('nan'):.2f}")
        print(f"  D {lo:3.0f}-{hi:<4.0f} km ({len(sel):3d} inits): " + "  ".join(cells))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
