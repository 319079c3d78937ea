"""Every ensemble score of ``verify_ensemble.py`` in one streaming accumulator.

:class:`EnsembleVerifier` takes one init at a time (:class:`EnsembleCase`: the members,
MRMS, the quality mask, area weights, the U-Net's bin probabilities and GRAF, all on one
grid) and keeps fixed-size sums, so memory does not grow with the number of inits. All
scores use the same points: good-quality MRMS where every member, every U-Net
probability and GRAF are finite. Per init date it also keeps the sums behind every skill
(:class:`pqpf.verify.bootstrap.DailySums`) for block-bootstrap intervals.

Scores (conventions and references in :mod:`pqpf.verify.ensemble`,
:mod:`pqpf.verify.ensemble_fields`, :mod:`pqpf.verify.fss`):

* CRPS, like for like: the members' fair CRPS on unbinned amounts and the U-Net's CRPS
  of its continuous distribution (:func:`pqpf.verify.ensemble.crps_binned_continuous`)
  at the same points with the same weights, both mm; GRAF's absolute error (its CRPS as
  a deterministic forecast) too.
* Spread-skill ratio, overall and in classes of spread; rank histogram (ties among dry
  amounts broken at random, seeded). Beside them, the same two for M members drawn at
  random from the U-Net's distribution (:class:`pqpf.verify.ensemble_fields.UNetDraws`,
  in expectation): what the U-Net's marginals allow, since ECC members take its values.
* Brier scores of the member probabilities (plain and fair), the U-Net's and raw GRAF's
  at the thresholds, reliability tables of members and U-Net.
* FSS at 1 to 41 px for the members (pooled), the member probabilities, the U-Net's
  probabilities, the U-Net's median field and raw GRAF; and the members against one
  another (dispersion FSS, Dey et al. 2014): what an observation indistinguishable from a
  member would score, so members below GRAF but level with their pairs are as far from
  MRMS as a perfect ensemble's would be.
* Radially averaged power spectra of the members, the U-Net's conditional mean amount
  (:func:`pqpf.verify.ensemble_fields.unet_mean_amount`), MRMS and GRAF, and their
  power relative to MRMS in a band (16-128 km by default).
* Mean amounts of MRMS, the members (their average), the U-Net's conditional mean and
  GRAF over the scored points, and each one's ratio to MRMS's: the multiplicative bias,
  as of areal totals (ECC-Q members fall short of the U-Net's mean by construction,
  :mod:`pqpf.diffusion.ecc`).
* Rain objects (:mod:`pqpf.verify.objects`): connected areas at or above thresholds in
  MRMS, each member, the U-Net's median field and GRAF; how many, how large (the
  point-weighted mean size, the largest), and each source's size over MRMS's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pqpf.ordinal import exceedance_probs, reaches, validate_bin_edges
from pqpf.verify.bootstrap import (
    ClimatologySkill,
    DailySums,
    FunctionSkill,
    RatioSkill,
    Skill,
    Sums,
    bootstrap_skills,
    safe_ratio,
)
from pqpf.verify.ensemble import EnsembleCRPS, PowerSpectrum, RankHistogram, SpreadSkill, member_exceedance_probs
from pqpf.verify.ensemble_fields import (
    BinnedSpreadSkill,
    UNetDraws,
    fair_brier_penalty,
    octave_annuli,
    spectral_band_ratio,
    spectral_octave_ratios,
    unet_mean_amount,
    unet_median_amount,
)
from pqpf.verify.fss import DEFAULT_WIDTHS_PX, FssAccumulator
from pqpf.verify.objects import DEFAULT_OBJECT_THRESHOLDS_MM, ObjectSizes
from pqpf.verify.verifier import Verifier

__all__ = ["AMOUNT_SOURCES", "FSS_SOURCES", "OBJECT_SOURCES", "SPECTRUM_SOURCES", "EnsembleCase", "EnsembleSettings",
           "EnsembleVerifier", "octave_interval_name"]

logger = logging.getLogger(__name__)

#: FSS sources: name -> kind (:data:`pqpf.verify.fss.SOURCE_KINDS`): the members (pooled),
#: the fraction of members reaching each threshold, the U-Net's probabilities, its median
#: amount field (50th percentile) and raw GRAF.
FSS_SOURCES: dict[str, str] = {"members": "amount", "ens_prob": "prob", "unet_prob": "prob",
                               "unet_p50": "amount", "graf": "amount"}
#: Power spectra kept, in the order of the figures.
SPECTRUM_SOURCES: tuple[str, ...] = ("mrms", "members", "unet_mean", "graf")
#: Mean amounts kept, the observation first (the ratios are to it).
AMOUNT_SOURCES: tuple[str, ...] = ("mrms", "members", "unet_mean", "graf")
#: Sources of the rain objects, the observation first (the size ratios are to it).
OBJECT_SOURCES: tuple[str, ...] = ("mrms", "members", "unet_p50", "graf")


@dataclass(frozen=True, eq=False)
class EnsembleCase:
    """One init's fields on one grid.

    Attributes
    ----------
    members_mm : float array (M, ny, nx)
    obs_mm : float array (ny, nx), NaN where missing
    good : bool array (ny, nx)
        Good-quality MRMS (:func:`pqpf.quality.good_quality_mask`).
    weight : float array (ny, nx)
        Non-negative area weights (:func:`pqpf.verify.area.area_weights`).
    unet_bins : float array (K, ny, nx)
        The U-Net's bin probabilities.
    graf_mm : float array (ny, nx)
    """

    members_mm: NDArray[np.floating]
    obs_mm: NDArray[np.floating]
    good: NDArray[np.bool_]
    weight: NDArray[np.floating]
    unet_bins: NDArray[np.floating]
    graf_mm: NDArray[np.floating]


@dataclass(frozen=True)
class EnsembleSettings:
    """What :class:`EnsembleVerifier` scores and how.

    Attributes
    ----------
    thresholds_mm : tuple of float
        Brier thresholds (mm); each a U-Net bin edge.
    edges_mm : tuple of float
        The U-Net's bin lower edges (mm).
    n_members : int
        M >= 2; every case must have M members.
    shape : (int, int)
        Grid shape (ny, nx).
    dx_km : float
        Grid spacing (km), for the spectra and the FSS widths in km.
    fss_thresholds_mm, fss_widths_px
        FSS thresholds and odd neighbourhood widths.
    band_km : (float, float)
        Wavelength band of the spectral ratios.
    object_thresholds_mm : tuple of float
        Thresholds of the rain objects (:mod:`pqpf.verify.objects`), distinct, each a
        U-Net bin edge (so the U-Net median reaches it exactly where P(>= t) >= 0.5).
    spectrum_min_valid_fraction : float
        A field with fewer valid points is left out of the spectra (all sources alike).
    seed : int
        Seed of the rank histogram's tie-breaking and of the bootstrap.
    dry_bin : {"point", "uniform"}
        The U-Net's first bin in its CRPS, mean and median.
    n_replicates, level
        Bootstrap replicates and interval coverage.
    """

    thresholds_mm: tuple[float, ...]
    edges_mm: tuple[float, ...]
    n_members: int
    shape: tuple[int, int]
    dx_km: float
    fss_thresholds_mm: tuple[float, ...] = (1.0, 5.0)
    fss_widths_px: tuple[int, ...] = DEFAULT_WIDTHS_PX
    band_km: tuple[float, float] = (16.0, 128.0)
    object_thresholds_mm: tuple[float, ...] = DEFAULT_OBJECT_THRESHOLDS_MM
    spectrum_min_valid_fraction: float = 0.5
    seed: int = 0
    dry_bin: str = "point"
    n_replicates: int = 1000
    level: float = 0.9

    def __post_init__(self) -> None:
        validate_bin_edges(self.edges_mm, tuple(self.thresholds_mm) + tuple(self.fss_thresholds_mm)
                           + tuple(self.object_thresholds_mm))
        if len({f"{t:g}" for t in self.object_thresholds_mm}) != len(self.object_thresholds_mm):
            raise ValueError(f"object thresholds must be distinct, got {list(self.object_thresholds_mm)}")
        if self.n_members < 2:
            raise ValueError(f"ensemble verification needs at least 2 members, got {self.n_members}")


def _name(kind: str, source: str = "", threshold_mm: float | None = None, width_px: int | None = None) -> str:
    """``fbs_members@1mm@5px``-style names of the per-date sums and skills."""
    out = kind + (f"_{source}" if source else "")
    if threshold_mm is not None:
        out += f"@{threshold_mm:g}mm"
    if width_px is not None:
        out += f"@{width_px}px"
    return out


def _octave_name(kind: str, source: str, band_km: Sequence[float]) -> str:
    """``psd_members@64-128km``-style names of the per-octave sums and skills."""
    return f"{kind}_{source}@{band_km[0]:g}-{band_km[1]:g}km"


def octave_interval_name(source: str, band_km: Sequence[float]) -> str:
    """The name of an octave's power ratio in ``result["intervals"]``, e.g.
    ``psd_ratio_members_vs_mrms@64-128km``."""
    return _octave_name("psd_ratio", f"{source}_vs_mrms", band_km)


class EnsembleVerifier:
    """Streaming ensemble scores over many inits (module docstring).

    Parameters
    ----------
    settings : EnsembleSettings
    """

    def __init__(self, settings: EnsembleSettings) -> None:
        s = settings
        self.settings = s
        self.crps = EnsembleCRPS(s.edges_mm, dry_bin=s.dry_bin)
        self.spread = SpreadSkill()
        self.spread_binned = BinnedSpreadSkill()
        self.rank = RankHistogram(s.n_members, seed=s.seed)
        self.unet_draws = UNetDraws(s.n_members, s.edges_mm, dry_bin=s.dry_bin)
        self.brier = Verifier(s.thresholds_mm)
        self.fss = FssAccumulator(FSS_SOURCES, s.fss_thresholds_mm, s.fss_widths_px, grid_spacing_km=s.dx_km,
                                  pairs=("members",))
        self.spectra = {name: PowerSpectrum(s.shape, s.dx_km, min_valid_fraction=s.spectrum_min_valid_fraction)
                        for name in SPECTRUM_SOURCES}
        self.objects = ObjectSizes(OBJECT_SOURCES, s.object_thresholds_mm)
        self.extra = np.zeros(1 + len(s.thresholds_mm))  # sum w |graf - y|, fair Brier penalties
        self.amounts = np.zeros(len(AMOUNT_SOURCES))  # sum w x, in the order of AMOUNT_SOURCES
        self.daily: DailySums | None = None
        self.n_cases = 0

    # -- accumulation --

    def _check(self, case: EnsembleCase) -> None:
        s = self.settings
        shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
            "members_mm": (case.members_mm.shape, (s.n_members, *s.shape)),
                  "unet_bins": (case.unet_bins.shape, (len(s.edges_mm), *s.shape))}
        shapes.update({n: (getattr(case, n).shape, s.shape) for n in ("obs_mm", "good", "weight", "graf_mm")})
        bad = [f"{n} {got} (expected {want})" for n, (got, want) in shapes.items() if tuple(got) != tuple(want)]
        if bad:
            raise ValueError("case shapes differ from the verifier's: " + ", ".join(bad))

    def update(self, case: EnsembleCase, day: str) -> int:
        """Add one init, its sums counted on ``day`` (e.g. ``"20251204"``); returns the points used."""
        self._check(case)
        s = self.settings
        members = np.asarray(case.members_mm, dtype=np.float64)
        obs = np.asarray(case.obs_mm, dtype=np.float64)
        bins = np.asarray(case.unet_bins, dtype=np.float64)
        graf = np.asarray(case.graf_mm, dtype=np.float64)
        weight = np.asarray(case.weight, dtype=np.float64)
        # valid points: also the neighbourhoods of the FSS and the spectra; scored where weight > 0
        use = (np.asarray(case.good, bool) & np.isfinite(obs) & np.isfinite(members).all(axis=0)
               & np.isfinite(bins).all(axis=0) & np.isfinite(graf) & np.isfinite(weight))
        weight = np.where(use, np.maximum(weight, 0.0), 0.0)
        scored = weight > 0
        before = self._named_sums()
        self.crps.update(members, obs, prob_bins=bins, mask=use, weight=weight)
        self.spread.update(members, obs, mask=use, weight=weight)
        self.spread_binned.update(members[:, scored], obs[scored], weight[scored])
        self.rank.update(members, obs, mask=use, weight=weight)
        self.unet_draws.update(bins[:, scored], obs[scored], weight[scored])
        p_members = member_exceedance_probs(members, s.thresholds_mm)
        p_unet = exceedance_probs(bins, s.edges_mm, s.thresholds_mm, dim=0)
        p_graf = np.stack([reaches(graf, t) for t in s.thresholds_mm]).astype(np.float64)
        self.brier.update(np.nan_to_num(p_members), p_graf, p_unet, np.where(use, obs, np.nan), weight)
        penalty = fair_brier_penalty(np.nan_to_num(p_members), s.n_members)
        self.extra += np.concatenate([[np.abs(graf - obs)[scored] @ weight[scored]],
                                      penalty[:, scored] @ weight[scored]])
        unet_mean = unet_mean_amount(bins, s.edges_mm, dry_bin=s.dry_bin).astype(np.float64)
        by_source = {"mrms": obs, "members": members.mean(axis=0), "unet_mean": unet_mean, "graf": graf}
        self.amounts += [by_source[name][scored] @ weight[scored] for name in AMOUNT_SOURCES]
        self._update_fields(members, obs, bins, graf, unet_mean, use, weight)
        after = self._named_sums()
        if self.daily is None:
            self.daily = DailySums(list(after))
        self.daily.add(day, {k: after[k] - before[k] for k in after})
        self.n_cases += 1
        return int(scored.sum())

    def _update_fields(self, members: NDArray[np.float64], obs: NDArray[np.float64], bins: NDArray[np.float64],
                       graf: NDArray[np.float64], unet_mean: NDArray[np.float64], use: NDArray[np.bool_],
                       weight: NDArray[np.float64]) -> None:
        """FSS and spectra: scores of whole fields."""
        s = self.settings
        forecasts = {
            "members": members, "ens_prob": member_exceedance_probs(members, s.fss_thresholds_mm),
            "unet_prob": exceedance_probs(bins, s.edges_mm, s.fss_thresholds_mm, dim=0),
            "unet_p50": unet_median_amount(bins, s.edges_mm, dry_bin=s.dry_bin), "graf": graf,
        }
        self.fss.update(forecasts, obs, valid=use, weight=weight)
        self.objects.update({"mrms": obs, **forecasts}, use)
        fields: dict[str, NDArray[np.floating]] = {
            "mrms": obs, "members": members, "unet_mean": unet_mean, "graf": graf}
        for name in SPECTRUM_SOURCES:
            self.spectra[name].update(fields[name], mask=use)

    # -- per-date sums and skills --

    def _band(self) -> NDArray[np.bool_]:
        lam = self.spectra["mrms"].wavelength_km
        lo, hi = sorted(self.settings.band_km)
        return np.asarray((lam >= lo) & (lam <= hi))

    def _octaves(self) -> list[tuple[tuple[float, float], NDArray[np.bool_]]]:
        """The octaves of :func:`spectral_octave_ratios` up to the band's longest wavelength."""
        return octave_annuli(self.spectra["mrms"].wavelength_km, self.settings.dx_km, max(self.settings.band_km))

    def _named_sums(self) -> dict[str, float]:
        """Every sum a skill needs, by name (cumulative)."""
        s = self.settings
        _, w, fair, plain, unet = self.crps.sums
        out = {"crps_w": w, "crps_fair": fair, "crps_plain": plain, "crps_unet": unet, "mae_graf": self.extra[0],
               "ss_var": self.spread.sums[2], "ss_sq": self.spread.sums[3]}
        out.update({_name("amount", name): v for name, v in zip(AMOUNT_SOURCES, self.amounts, strict=True)})
        for k, t in enumerate(s.thresholds_mm):
            _, wt, wo, sse_m, sse_u, sse_g = self.brier.sums[:, k]
            out.update({_name("weight", "", t): wt, _name("sum_wo", "", t): wo,
                        _name("sse", "members", t): sse_m, _name("sse", "unet", t): sse_u,
                        _name("sse", "graf", t): sse_g, _name("penalty", "members", t): self.extra[1 + k]})
        ff, fo, oo = (self.fss.sums[..., i] for i in range(3))
        for i, src in enumerate(self.fss.source_names):
            for k, t in enumerate(s.fss_thresholds_mm):
                for j, width in enumerate(s.fss_widths_px):
                    out[_name("fbs", src, t, width)] = ff[i, k, j] - 2 * fo[i, k, j] + oo[i, k, j]
                    out[_name("worst", src, t, width)] = ff[i, k, j] + oo[i, k, j]
        pff, pfo, poo = (self.fss.pair_sums[0, ..., i] for i in range(3))
        for k, t in enumerate(s.fss_thresholds_mm):
            for j, width in enumerate(s.fss_widths_px):
                out[_name("fbs", "member_pairs", t, width)] = pff[k, j] - 2 * pfo[k, j] + poo[k, j]
                out[_name("worst", "member_pairs", t, width)] = pff[k, j] + poo[k, j]
        band, octaves = self._band(), self._octaves()
        for name, spec in self.spectra.items():
            out[_name("psd", name)] = float(spec.power_sum[band].sum())
            out[_name("psd_n", name)] = float(spec.counts[0])
            out.update({_octave_name("psd", name, b): float(spec.power_sum[sel].sum()) for b, sel in octaves})
        out.update(self.objects.named_sums())
        return {k: float(v) for k, v in out.items()}

    def skills(self) -> list[Skill]:
        """Every skill given with a bootstrap interval (names as in :meth:`result`)."""
        s = self.settings
        m = s.n_members
        skills: list[Skill] = [
            RatioSkill("crpss_fair_vs_unet", "crps_fair", "crps_unet"),
            RatioSkill("crpss_plain_vs_unet", "crps_plain", "crps_unet"),
            RatioSkill("crpss_fair_vs_graf", "crps_fair", "mae_graf"),
            RatioSkill("crpss_unet_vs_graf", "crps_unet", "mae_graf"),
            FunctionSkill("spread_skill_ratio", self._spread_ratio(m)),
        ]
        for t in s.thresholds_mm:
            sse_m, sse_u, pen = _name("sse", "members", t), _name("sse", "unet", t), _name("penalty", "members", t)
            skills += [RatioSkill(_name("bss_members_vs_unet", "", t), sse_m, sse_u),
                       FunctionSkill(_name("bss_fair_members_vs_unet", "", t), self._fair_bss(sse_m, sse_u, pen)),
                       ClimatologySkill(_name("bss_members_vs_clim", "", t), sse_m, _name("weight", "", t),
                                        _name("sum_wo", "", t)),
                       ClimatologySkill(_name("bss_unet_vs_clim", "", t), sse_u, _name("weight", "", t),
                                        _name("sum_wo", "", t))]
        for t in s.fss_thresholds_mm:
            for width in s.fss_widths_px:
                for src in self.fss.source_names:
                    skills.append(RatioSkill(_name("fss", src, t, width), _name("fbs", src, t, width),
                                             _name("worst", src, t, width)))
                skills.append(RatioSkill(_name("fss", "member_pairs", t, width), _name("fbs", "member_pairs", t, width),
                                         _name("worst", "member_pairs", t, width)))
                skills.append(FunctionSkill(_name("fss_members_minus_graf", "", t, width), self._fss_difference(
                    t, width)))
                skills.append(FunctionSkill(_name("fss_members_minus_pairs", "", t, width), self._fss_difference(
                    t, width, "member_pairs")))
        for name in ("members", "unet_mean", "graf"):
            skills.append(FunctionSkill(_name("psd_ratio", f"{name}_vs_mrms"), self._psd_ratio(name)))
            skills += [FunctionSkill(octave_interval_name(name, b), self._psd_ratio(name, b))
                       for b, _ in self._octaves()]
            skills.append(FunctionSkill(_name("amount_ratio", f"{name}_vs_mrms"), self._amount_ratio(name)))
        for name in OBJECT_SOURCES[1:]:
            skills += [FunctionSkill(_name("object_size_ratio", f"{name}_vs_mrms", t),
                                     ObjectSizes.size_ratio(name, "mrms", t)) for t in s.object_thresholds_mm]
        return skills

    @staticmethod
    def _amount_ratio(name: str) -> Any:
        def ratio(x: Sums) -> NDArray[np.float64]:
            return safe_ratio(x[_name("amount", name)], x[_name("amount", "mrms")])
        return ratio

    @staticmethod
    def _fair_bss(sse_members: str, sse_unet: str, penalty: str) -> Any:
        def skill(x: Sums) -> NDArray[np.float64]:
            return 1.0 - safe_ratio(np.asarray(x[sse_members] - x[penalty]), np.asarray(x[sse_unet]))
        return skill

    @staticmethod
    def _spread_ratio(m: int) -> Any:
        def ratio(x: Sums) -> NDArray[np.float64]:
            return np.asarray(np.sqrt((m + 1) / m * safe_ratio(x["ss_var"], x["ss_sq"])))
        return ratio

    @staticmethod
    def _fss_difference(t: float, width: int, other: str = "graf") -> Any:
        """FSS of the members minus that of ``other`` (a source or ``member_pairs``)."""
        def diff(x: Sums) -> NDArray[np.float64]:
            members = 1.0 - safe_ratio(x[_name("fbs", "members", t, width)], x[_name("worst", "members", t, width)])
            ref = 1.0 - safe_ratio(x[_name("fbs", other, t, width)], x[_name("worst", other, t, width)])
            return members - ref
        return diff

    @staticmethod
    def _psd_ratio(name: str, band_km: tuple[float, float] | None = None) -> Any:
        """Power over MRMS's in the band (``band_km`` None) or in one octave."""
        def psd(source: str) -> str:
            return _name("psd", source) if band_km is None else _octave_name("psd", source, band_km)

        def ratio(x: Sums) -> NDArray[np.float64]:
            return safe_ratio(safe_ratio(x[psd(name)], x[_name("psd_n", name)]),
                              safe_ratio(x[psd("mrms")], x[_name("psd_n", "mrms")]))
        return ratio

    # -- results --

    def result(self) -> dict[str, Any]:
        """All scores, JSON-ready apart from NaN (see :func:`pqpf.io.jsonio.to_plain`)."""
        if self.daily is None:
            raise ValueError("no case was added")
        s = self.settings
        intervals = bootstrap_skills(self.daily, self.skills(), n_replicates=s.n_replicates, seed=s.seed,
                                     level=s.level)
        crps: dict[str, Any] = dict(self.crps.result())
        mae = self.extra[0] / crps["weight"] if crps["weight"] > 0 else math.nan
        unet = crps["crps_unet"]
        crps.update({"crpss_plain_vs_unet": 1 - crps["crps_plain"] / unet if unet > 0 else math.nan,
                     "mae_graf": mae, "crpss_fair_vs_graf": 1 - crps["crps_fair"] / mae if mae > 0 else math.nan,
                     "crpss_unet_vs_graf": 1 - unet / mae if mae > 0 else math.nan, "unet_dry_bin": s.dry_bin})
        rank = self.rank.result()
        freq = np.asarray(rank["frequency"], dtype=np.float64) * (s.n_members + 1)
        rank.update({"min_over_uniform": float(np.min(freq)), "max_over_uniform": float(np.max(freq))})
        return {
            "n_members": s.n_members, "n_cases": self.n_cases, "thresholds_mm": list(s.thresholds_mm),
            "bin_edges_mm": list(s.edges_mm), "crps": crps,
            "spread_skill": {**self.spread.result(), "binned": self.spread_binned.result()},
            "rank_histogram": rank, "unet_draws": self.unet_draws.result(), "brier": self._brier_result(),
            "fss": self.fss.result(),
            "spectra": self._spectra_result(), "amounts": self._amounts_result(),
            "objects": self.objects.result(s.dx_km), "days": list(self.daily.days),
            "intervals": {k: v.as_dict() for k, v in intervals.items()},
        }

    def _brier_result(self) -> list[dict[str, Any]]:
        s = self.settings
        rows = []
        for k, t in enumerate(s.thresholds_mm):
            sc = self.brier.threshold_scores(k)
            wsum = sc["weight"]
            fair = (sc["bs_model"] - self.extra[1 + k] / wsum) if wsum > 0 else math.nan
            rows.append({
                "threshold_mm": float(t), "n": sc["n"], "weight": wsum, "base_rate": sc["base_rate"],
                "bs_members": sc["bs_model"], "bs_members_fair": fair, "bs_unet": sc["bs_ref"],
                "bs_graf": sc["bs_raw"], "bs_clim": sc["bs_clim"], "bss_members_vs_unet": sc["bss_vs_ref"],
                "bss_fair_members_vs_unet": 1 - fair / sc["bs_ref"] if sc["bs_ref"] > 0 else math.nan,
                "bss_members_vs_clim": sc["bss_vs_clim"], "bss_unet_vs_clim": sc["bss_ref_vs_clim"],
                "reliability_curve_members": self.brier.rel_model[k].as_dict(),
                "reliability_curve_unet": self.brier.rel_ref[k].as_dict(),
            })
        return rows

    def _amounts_result(self) -> dict[str, Any]:
        """Mean amounts over the scored points (true-area weights) and their ratio to MRMS's:
        the multiplicative bias, e.g. of areal totals."""
        w = self.crps.sums[1]
        mean = {name: float(v / w) if w > 0 else math.nan for name, v in zip(AMOUNT_SOURCES, self.amounts,
                                                                             strict=True)}
        ref = self.amounts[0]
        return {"mean_mm": mean, "ratio_vs_mrms": {name: float(v / ref) if ref > 0 else math.nan for name, v in
                                                   zip(AMOUNT_SOURCES[1:], self.amounts[1:], strict=True)}}

    def _spectra_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: spec.result() for name, spec in self.spectra.items()}
        ref = out["mrms"]
        out["band_ratio_vs_mrms"] = {
            name: spectral_band_ratio(ref["wavelength_km"], out[name]["power"], ref["power"], self.settings.band_km)
            for name in ("members", "unet_mean", "graf")}
        # the band's one number can hide a wrong shape (too much power at the shortest
        # wavelengths, too little at the longest): the same ratio per octave
        out["octave_ratios_vs_mrms"] = {
            name: spectral_octave_ratios(ref["wavelength_km"], out[name]["power"], ref["power"], self.settings.dx_km,
                                         max(self.settings.band_km))
            for name in ("members", "unet_mean", "graf")}
        out["dx_km"] = self.settings.dx_km
        out["unet_mean"]["definition"] = ("mean amount (mm) of the U-Net's binned distribution: dry bin at "
                                          "0 mm, closed bins at their midpoints, the open bin at its edge plus "
                                          "the tail scale")
        return out
