"""The verification outputs: ``scores.json`` (every score, the reliability tables, which
inits were used, skipped or failed, and a digest of the inputs) and ``scores.csv`` (one
row per threshold), in ``{plots_dir}/verification_{BEGIN}_{END}_{LEAD}h/``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pqpf.io.atomic import atomic_write_text
from pqpf.io.jsonio import to_plain

__all__ = ["SCORES_SCHEMA", "write_scores_json", "write_scores_csv", "read_scores_json"]

#: What the verification stages compute; part of their input digests, so stored scores
#: made by an older version (without the scores added since) are recomputed, not reused.
#: 2: reliability-bin intervals, member-pair FSS. 3: spectra per octave. 4: mean amounts vs MRMS.
#: 5: random draws from the U-Net (rank histogram, spread-skill) beside the members'.
#: 6: rain-object sizes (:mod:`pqpf.verify.objects`) of members, MRMS, U-Net median and GRAF.
#: 7: intervals over the init dates for the spectra's octave ratios.
SCORES_SCHEMA = 7


def write_scores_json(path: Path, scores: dict[str, Any]) -> Path:
    """Write ``scores`` (NaN as null) atomically."""
    atomic_write_text(path, json.dumps(to_plain(scores), indent=1) + "\n")
    return path


def write_scores_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """One row per threshold, the columns of the first row, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(to_plain(rows))
    atomic_write_text(path, buf.getvalue())
    return path


def read_scores_json(path: Path) -> dict[str, Any] | None:
    """A stored ``scores.json``, or None when absent or unreadable (it is then recomputed)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
