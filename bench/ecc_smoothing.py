#!/usr/bin/env python3
"""Choose the ECC rank smoothing (or ECC-S's level smoothing) on the same members.

ECC gives every point the same M values whatever the members are ranked by, so every
point-wise score (CRPS, spread-skill, rank histogram, Brier) is the same for every
smoothing; the spectra and the members' FSS are not. This samples the members of each
init once (the demo's models, ``--members`` members, seed 0), builds the ECC-M members
ranked by their variable z Gaussian-smoothed over each ``--sigmas`` value (grid points),
verifies each set with ``verify_ensemble`` and prints, per smoothing, the members' power
relative to MRMS per octave and per annulus at 16-128 km and the members' FSS at 1 mm
against their own pair FSS (Dey et al. 2014), then the rain objects at 5, 10 and 25 mm
(:mod:`pqpf.verify.objects`: the members' point-weighted object size over MRMS's, and the
largest object; with random levels both are medians over the seeds, the ratio over the
seeds with an object). Printed last: the smoothing closest to MRMS over the four octaves
(smallest mean |log ratio|), the one whose worst 16-128 km annulus is (smallest max |log
ratio|), and the one whose worst octave in the band is (the issue's target: the power
within a factor 1.5 from 16 to 128 km), each with the share of seeds that meet it.

With ``--level-sigmas``, the rank smoothing stays at its default and ECC-S's level fields
(:func:`pqpf.diffusion.ecc.coherent_uniforms`) are smoothed over each value instead (0:
levels drawn point by point; inf: one per member). The levels are random, so each
smoothing is drawn with ``--level-seeds`` seeds (ECC seeds 0, 1, ...: the level fields
and the rank tie-breaks) and the table gives their median (and the share of seeds
within 1.5x of MRMS's power); the point-wise scores then differ only by chance. The median,
not the mean: a level field near 1 over a top-ranked area puts a whole area deep in the
U-Net's open tail, and one seed in 20 of the default gave 7x MRMS's power at 64-128 km
(a 136-mm plateau), which would dominate a mean. The rank
smoothing is summarised over the same seeds when the default levels are random (ECC-S).

With ``--template schaake`` the members are not the diffusion model's: each init's M rank
templates are MRMS fields (log1p mm, missing as dry) valid at the same hour on M earlier
days, ``--schaake-days-before`` and the M - 1 days before that: the Schaake shuffle
(Clark et al. 2004), which gives the U-Net's marginals the observed spatial dependence of
other days. Its spectra and objects are what ECC can reach with MRMS's own texture placed
without regard to the forecast, the yardstick for the diffusion members' structure.

Pick it on held-out inits other than the ones you judge it by: by default every held-out
init of the demo with a probabilities file and MRMS except 2025062900 and 2025063012, the
two the demo's ensemble step reported until 2026-12-05 (it now verifies all twelve), kept
out of every choice made with this bench.

    python bench/ecc_smoothing.py --demo-dir demo_run [--sigmas 0 1 2 3 4 6] [--members 8]
    python bench/ecc_smoothing.py --demo-dir demo_run --level-sigmas 8 12 32 [--level-seeds 20]
    python bench/ecc_smoothing.py --demo-dir demo_run --level-sigmas 32 --template schaake
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pqpf.cli.common import smoothing_px  # noqa: E402

DEMO_ENSEMBLE_INITS = ("2025062900", "2025063012")  # kept out of the choices (docstring)
OBJECT_THRESHOLDS_MM = (5.0, 10.0, 25.0)  # rain objects printed (pqpf.verify.objects)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", "--site-dir", dest="demo_dir", type=Path, required=True,
                        help="a directory run_demo.py has filled, or any site's folder with its config.ini, "
                        "trained models, probabilities files and remapped MRMS (then give --inits)")
    parser.add_argument("--lead", type=int, default=6, help="lead (h) of the demo's models (default 6)")
    parser.add_argument("--inits", nargs="*", default=None, help="YYYYMMDDHH inits (default: see above)")
    parser.add_argument("--sigmas", nargs="*", type=float, default=[0, 1, 2, 3, 4, 6])
    parser.add_argument("--level-sigmas", nargs="*", type=smoothing_px, default=None,
                        help="vary ECC-S's level smoothing (grid points, inf allowed) instead of the rank smoothing")
    parser.add_argument("--level-seeds", type=int, default=20,
                        help="level draws per --level-sigmas value (default 20)")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--template", choices=("diffusion", "schaake"), default="diffusion",
                        help="rank templates: the diffusion members (default) or MRMS of earlier days (see above)")
    parser.add_argument("--schaake-days-before", type=int, default=7,
                        help="with --template schaake, the latest template day before the verifying one (default 7)")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def _log_gap(ratios: list[float]) -> float:
    """max |log ratio| over ``ratios``: inf if one is <= 0 (no power), NaN if one is NaN or none."""
    if not ratios or any(math.isnan(r) for r in ratios):
        return math.nan
    return max(abs(math.log(r)) if r > 0 else math.inf for r in ratios)


def _summary(result: dict) -> dict:
    spectra = result["spectra"]
    band = spectra["band_ratio_vs_mrms"]["members"]
    octaves = [o["ratio"] for o in spectra["octave_ratios_vs_mrms"]["members"]]
    fss = result["fss"]
    widths = fss["widths_px"]
    members = fss["sources"]["members"]["per_threshold"][0]
    pairs = fss["pairs"]["members"]["per_threshold"][0]
    at = [widths.index(w) for w in (1, 11, 41)]
    lo = band["band_km"][0]  # the octaves that overlap the band (on the 4-km grid: from 16-32 km)
    in_band = [o["ratio"] for o in spectra["octave_ratios_vs_mrms"]["members"] if o["band_km"][1] > lo]
    return {"band": band["ratio"], "min": band["min_ratio"], "max": band["max_ratio"], "band_km": band["band_km"],
            "worst": _log_gap([band["min_ratio"], band["max_ratio"]]), "worst_octave": _log_gap(in_band),
            "octaves": octaves, "fss": [members["fss"][k] for k in at],
            "gap": [members["fss"][k] - pairs["fss"][k] for k in at],
            "crps": result["crps"]["crpss_plain_vs_unet"], "spread_skill": result["spread_skill"]["ratio"],
            "rank": [result["rank_histogram"]["min_over_uniform"], result["rank_histogram"]["max_over_uniform"]],
            **_objects(result)}


def _objects(result: dict) -> dict:
    """Rain objects at 5, 10 and 25 mm: the members' point-weighted size over MRMS's, and the
    largest object of any member and of MRMS (grid points)."""
    objects = result["objects"]
    at = [objects["thresholds_mm"].index(t) for t in OBJECT_THRESHOLDS_MM]
    rows = {name: objects["sources"][name]["per_threshold"] for name in ("members", "mrms")}

    def ratio(k: int) -> float:
        mem, obs = rows["members"][k]["point_weighted_size_px"], rows["mrms"][k]["point_weighted_size_px"]
        return mem / obs if mem is not None and obs else math.nan

    return {"size_ratio": [ratio(k) for k in at], "largest": [float(rows["members"][k]["max_largest_px"]) for k in at],
            "largest_mrms": [float(rows["mrms"][k]["max_largest_px"]) for k in at]}


def _median_summary(rows: list[dict]) -> dict:
    """The median of several draws' summaries (lists element-wise, over the draws where the
    value exists: a draw without a 25-mm object has no size ratio there); ``within`` and
    ``within_annuli`` are the shares of draws with every octave, every annulus, of the band
    within 1.5x."""
    import statistics

    def median(values: Any) -> float:
        known = [v for v in values if not math.isnan(v)]  # inf (no power) is kept: the worst
        return statistics.median(known) if known else math.nan

    out = {key: ([median(v) for v in zip(*(r[key] for r in rows))] if isinstance(rows[0][key], list)
                 else median(r[key] for r in rows)) for key in rows[0] if key != "band_km"}
    out["band_km"] = rows[0]["band_km"]
    out["within"] = sum(r["worst_octave"] <= math.log(1.5) for r in rows) / len(rows)
    out["within_annuli"] = sum(r["worst"] <= math.log(1.5) for r in rows) / len(rows)
    return out


def _inits(config: Any, args: argparse.Namespace) -> list:
    import datetime

    from pqpf.dates import parse_yyyymmddhh
    from pqpf.layout import mrms_remapped_path

    if args.inits:
        return [parse_yyyymmddhh(t) for t in args.inits]
    files = sorted(config.paths.probs_dir.glob(f"*_{args.lead}h_probs.nc"))
    inits = [parse_yyyymmddhh(f.name.split("_")[0]) for f in files]
    return [t for t in inits if f"{t:%Y%m%d%H}" not in DEMO_ENSEMBLE_INITS
            and mrms_remapped_path(config, t + datetime.timedelta(hours=args.lead)).is_file()]


def _schaake_latent(config: Any, valid: Any, n_members: int, days_before: int) -> Any:
    """The Schaake-shuffle templates of ``valid``: log1p of the MRMS fields at the same hour
    ``days_before`` .. ``days_before + n_members - 1`` days earlier, missing points as dry."""
    import datetime

    import numpy as np

    from pqpf.io.mrms_file import read_remapped_mrms
    from pqpf.layout import mrms_remapped_path

    fields = [read_remapped_mrms(mrms_remapped_path(config, valid - datetime.timedelta(days=days_before + k)))
              for k in range(n_members)]
    return np.stack([np.log1p(np.nan_to_num(f.precipitation_mm, nan=0.0)) for f in fields]).astype(np.float32)


def _print_table(rows: dict, what: str) -> None:
    band = "-".join(f"{b:g}" for b in next(iter(rows.values()))["band_km"])
    print(f"{what:>9}  plain CRPSS  spread-skill  rank hist. | power / MRMS: {band} km (annuli)   octaves from 2 dx  "
          "| FSS 1 mm 1/11/41 px   members - pairs")
    for sigma, r in rows.items():
        print(f"{sigma:6g} px  {r['crps']:+.3f}       {r['spread_skill']:.3f}        "
              f"{r['rank'][0]:.2f}..{r['rank'][1]:.2f} | {r['band']:.3f} ({r['min']:.2f}..{r['max']:.2f})      "
              + "  ".join(f"{o:5.2f}" for o in r["octaves"])
              + " | " + " ".join(f"{v:.3f}" for v in r["fss"]) + "   " + " ".join(f"{v:+.3f}" for v in r["gap"]))
    heads = " / ".join(f"{t:g}" for t in OBJECT_THRESHOLDS_MM)
    print(f"rain objects at {heads} mm: members' point-weighted size / MRMS's;  largest member object (MRMS's), px")
    for sigma, r in rows.items():
        print(f"{sigma:6g} px  " + " / ".join(f"{v:.2f}" for v in r["size_ratio"]) + "      "
              + " / ".join(f"{m:.0f} ({o:.0f})" for m, o in zip(r["largest"], r["largest_mrms"], strict=True)))
    octaves = {s: sum(abs(math.log(o)) for o in r["octaves"]) / len(r["octaves"]) for s, r in rows.items()}
    closest = min(octaves, key=lambda s: octaves[s])
    print(f"closest to MRMS over all the octaves (mean |log ratio|): {what} {closest:g} px "
          f"({', '.join(f'{s:g} px {v:.2f}' for s, v in octaves.items())})")
    for key, share_key, unit in (("worst", "within_annuli", "annulus"), ("worst_octave", "within", "octave")):
        best = min(rows, key=lambda s: rows[s][key])
        values = ", ".join(f"{s:g} px {r[key]:.2f}" for s, r in rows.items())
        shares = ", ".join(f"{s:g} px {r[share_key]:.2f}" for s, r in rows.items() if share_key in r)
        print(f"closest to MRMS in its worst {band} km {unit} (max |log ratio|): {what} {best:g} px ({values})"
              + (f"; share of level seeds with every {unit} within 1.5x: {shares}" if shares else ""))


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import datetime

    from pqpf.config import load_config
    from pqpf.device import select_device, set_threads
    from pqpf.diffusion.ecc import DEFAULT_ECC_LEVELS, DEFAULT_ECC_SMOOTHING_PX
    from pqpf.io.ensemble_file import write_ensemble
    from pqpf.layout import ensemble_path, probs_path
    from pqpf.stages.ensemble_inference import draw_members, ensemble_product, load_models_for_lead
    from pqpf.stages.verify_ensemble import verify_ensemble_range

    set_threads(args.threads)
    config = load_config(args.demo_dir / "config.ini")
    inits = _inits(config, args)
    if not inits:
        print("no held-out inits with probabilities and MRMS found", file=sys.stderr)
        return 1
    levels = args.level_sigmas is not None
    random_levels = levels or DEFAULT_ECC_LEVELS == "stratified"  # then the median over --level-seeds
    sigmas = args.level_sigmas if levels else args.sigmas
    # (smoothing, seed) -> (levels, rank smoothing, level smoothing)
    variants = {(s, k): ("stratified", DEFAULT_ECC_SMOOTHING_PX, s) if levels else (DEFAULT_ECC_LEVELS, s, None)
                for s in sigmas for k in range(args.level_seeds if random_levels else 1)}
    device = select_device("cpu")
    models = load_models_for_lead(config, args.lead, device)
    work = Path(tempfile.mkdtemp(prefix="ecc_smoothing_"))
    sites = {v: dataclasses.replace(config, paths=dataclasses.replace(
        config.paths, probs_dir=work / f"s{v[0]:g}_{v[1]}" / "probs", plots_dir=work / f"s{v[0]:g}_{v[1]}" / "plots"))
        for v in variants}
    print(f"{len(inits)} inits ({inits[0]:%Y%m%d%H} .. {inits[-1]:%Y%m%d%H}), {args.members} members, "
          f"ECC {'stratified' if levels else DEFAULT_ECC_LEVELS}, ranks from "
          + ("the diffusion members" if args.template == "diffusion" else
             f"MRMS {args.schaake_days_before}..{args.schaake_days_before + args.members - 1} days before (Schaake)")
          + f"; work directory {work}", flush=True)
    try:
        for init in inits:
            # Schaake: one member is sampled only for the draw's U-Net fields; the templates replace it
            sampled = 1 if args.template == "schaake" else args.members
            draw = draw_members(config, init, args.lead, models, sampled, 0, device, models[1].sampler)
            if args.template == "schaake":
                valid = init + datetime.timedelta(hours=args.lead)
                draw = dataclasses.replace(draw, latent=_schaake_latent(config, valid, args.members,
                                                                        args.schaake_days_before))
            for (sigma, seed), site in sites.items():
                mode, ranks, level_px = variants[(sigma, seed)]
                extra = {} if level_px is None else {"ecc_level_smoothing_px": level_px}
                product = ensemble_product(site, dataclasses.replace(draw, seed=seed), models, mode, ranks, **extra)
                write_ensemble(ensemble_path(site, init, args.lead), product)
                shutil.copy(probs_path(config, init, args.lead), probs_path(site, init, args.lead))
        per_seed: dict = {}
        for (sigma, _seed), site in sites.items():
            report = verify_ensemble_range(site, inits[0], inits[-1], args.lead, plot=False, n_replicates=100)
            per_seed.setdefault(sigma, []).append(_summary(report.result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = {sigma: _median_summary(r) if random_levels else r[0] for sigma, r in per_seed.items()}
    _print_table(rows, "levels" if levels else "ranks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
