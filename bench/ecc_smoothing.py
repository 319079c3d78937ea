#!/usr/bin/env python3
"""Choose the ECC rank smoothing: the same members arranged by differently smoothed ranks.

ECC gives every point the same M values whatever the members are ranked by, so every
point-wise score (CRPS, spread-skill, rank histogram, Brier) is the same for every
smoothing; the spectra and the members' FSS are not. This samples the members of each
init once (the demo's models, ``--members`` members, seed 0), builds the ECC-M members
ranked by their variable z Gaussian-smoothed over each ``--sigmas`` value (grid points),
verifies each set with ``verify_ensemble`` and prints, per smoothing, the members' power
relative to MRMS per octave and per annulus at 16-128 km and the members' FSS at 1 mm
against their own pair FSS (Dey et al. 2014). The smoothing whose worst 16-128 km
annulus is closest to MRMS (smallest max |log ratio|) is printed last.

Pick it on held-out inits other than the ones you report: by default every held-out
init of the demo with a probabilities file and MRMS, except the two inits the demo's own
ensemble step reports.

    python bench/ecc_smoothing.py --demo-dir demo_run [--sigmas 0 1 2 3 4 6] [--members 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_ENSEMBLE_INITS = ("2025062900", "2025063012")  # what run_demo.py's ensemble step reports


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", "--site-dir", dest="demo_dir", type=Path, required=True,
                        help="a directory run_demo.py has filled, or any site's folder with its config.ini, "
                        "trained models, probabilities files and remapped MRMS (then give --inits)")
    parser.add_argument("--lead", type=int, default=6, help="lead (h) of the demo's models (default 6)")
    parser.add_argument("--inits", nargs="*", default=None, help="YYYYMMDDHH inits (default: see above)")
    parser.add_argument("--sigmas", nargs="*", type=float, default=[0, 1, 2, 3, 4, 6])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def _summary(result: dict) -> dict:
    spectra = result["spectra"]
    band = spectra["band_ratio_vs_mrms"]["members"]
    octaves = [o["ratio"] for o in spectra["octave_ratios_vs_mrms"]["members"]]
    fss = result["fss"]
    widths = fss["widths_px"]
    members = fss["sources"]["members"]["per_threshold"][0]
    pairs = fss["pairs"]["members"]["per_threshold"][0]
    at = [widths.index(w) for w in (1, 11, 41)]
    return {"band": band["ratio"], "min": band["min_ratio"], "max": band["max_ratio"],
            "worst": max(abs(math.log(band["min_ratio"])), abs(math.log(band["max_ratio"]))),
            "octaves": octaves, "fss": [members["fss"][k] for k in at],
            "gap": [members["fss"][k] - pairs["fss"][k] for k in at],
            "crps": result["crps"]["crpss_plain_vs_unet"], "spread_skill": result["spread_skill"]["ratio"]}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from pqpf.config import load_config
    from pqpf.dates import parse_yyyymmddhh
    from pqpf.device import select_device, set_threads
    from pqpf.diffusion.ecc import DEFAULT_ECC_LEVELS
    from pqpf.io.ensemble_file import write_ensemble
    from pqpf.layout import ensemble_path, mrms_remapped_path, probs_path
    from pqpf.stages.ensemble_inference import draw_members, ensemble_product, load_models_for_lead
    from pqpf.stages.verify_ensemble import verify_ensemble_range

    set_threads(args.threads)
    config = load_config(args.demo_dir / "config.ini")
    lead = args.lead
    if args.inits:
        inits = [parse_yyyymmddhh(t) for t in args.inits]
    else:
        files = sorted(config.paths.probs_dir.glob(f"*_{lead}h_probs.nc"))
        inits = [parse_yyyymmddhh(f.name.split("_")[0]) for f in files]
        inits = [t for t in inits if f"{t:%Y%m%d%H}" not in DEMO_ENSEMBLE_INITS
                 and mrms_remapped_path(config, t + __import__("datetime").timedelta(hours=lead)).is_file()]
    if not inits:
        print("no held-out inits with probabilities and MRMS found", file=sys.stderr)
        return 1
    device = select_device("cpu")
    models = load_models_for_lead(config, lead, device)
    work = Path(tempfile.mkdtemp(prefix="ecc_smoothing_"))
    sites = {s: dataclasses.replace(config, paths=dataclasses.replace(
        config.paths, probs_dir=work / f"s{s:g}" / "probs", plots_dir=work / f"s{s:g}" / "plots"))
        for s in args.sigmas}
    print(f"{len(inits)} inits ({inits[0]:%Y%m%d%H} .. {inits[-1]:%Y%m%d%H}), {args.members} members, "
          f"ECC {DEFAULT_ECC_LEVELS}; work directory {work}", flush=True)
    try:
        for init in inits:
            draw = draw_members(config, init, lead, models, args.members, 0, device, models[1].sampler)
            for sigma, site in sites.items():
                write_ensemble(ensemble_path(site, init, lead),
                               ensemble_product(site, draw, models, DEFAULT_ECC_LEVELS, sigma))
                shutil.copy(probs_path(config, init, lead), probs_path(site, init, lead))
        rows = {}
        for sigma, site in sites.items():
            report = verify_ensemble_range(site, inits[0], inits[-1], lead, plot=False, n_replicates=100)
            rows[sigma] = _summary(report.result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("smoothing  plain CRPSS  spread-skill | power / MRMS: 16-128 km (annuli)   8-16  16-32  32-64  64-128 | "
          "FSS 1 mm 1/11/41 px   members - pairs")
    for sigma, r in rows.items():
        print(f"{sigma:6g} px  {r['crps']:+.3f}       {r['spread_skill']:.3f}       | {r['band']:.3f} "
              f"({r['min']:.2f}..{r['max']:.2f})      " + "  ".join(f"{o:5.2f}" for o in r["octaves"])
              + " | " + " ".join(f"{v:.3f}" for v in r["fss"]) + "   " + " ".join(f"{v:+.3f}" for v in r["gap"]))
    best = min(rows, key=lambda s: rows[s]["worst"])
    print(f"closest to MRMS in its worst 16-128 km annulus: {best:g} px "
          f"(power ratio {rows[best]['min']:.2f}..{rows[best]['max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
