"""The Brier-skill table that ``verify_resunet.py`` and the demo print."""

from __future__ import annotations

from typing import Any

__all__ = ["format_score_table"]


def format_score_table(result: dict[str, Any]) -> str:
    """The Brier-skill table the CLI and the demo print."""

    def f(value: Any, fmt: str) -> str:
        width = int("".join(c for c in fmt.split(".")[0] if c.isdigit()) or 0)
        if value is None:
            return "n/a".rjust(width)
        if fmt.endswith("f") and "+" not in fmt and 0 < abs(value) < 1e-3:
            return format(value, f"{width}.2e")  # small Brier scores and base rates
        return format(value, fmt)

    lines = [" thresh   base rate   BS model    BS ref   BSS vs ref  BSS vs clim   points",
             " ------   ---------   --------  --------   ----------  -----------  -------"]
    for row in result["per_threshold"]:
        lines.append(
            f"{row['threshold_mm']:5g} mm  {f(row['base_rate'], '9.4f')}  {f(row['bs_model'], '9.5f')} "
            f"{f(row['bs_ref'], '9.5f')}   {f(row['bss_vs_ref'], '+10.3f')}  {f(row['bss_vs_clim'], '+11.3f')}"
            f"  {row['n']:7d}"
        )
    crps = result.get("crps") or {}
    if crps.get("crps_model") is not None:
        lines.append(
            f"CRPS on the bins (amounts at bin lower edges): model {crps['crps_model']:.4f} mm, "
            f"GRAF {f(crps.get('crps_raw_binned'), '.4f')} mm, skill {f(crps.get('crpss_vs_raw_binned'), '+.3f')}"
        )
        lines.append(f"(GRAF MAE on unbinned amounts {f(crps.get('mae_raw'), '.4f')} mm: "
                     "not comparable with the above)")
    return "\n".join(lines)
