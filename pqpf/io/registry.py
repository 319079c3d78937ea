"""The model registry: which checkpoint inference uses, per model kind and lead.

``{trainings_dir}/registry.json`` (as the StormCast workflow's registry)::

    {"format": "pqpf-registry", "format_version": 2,
     "models": {"resunet":   {"6": {"checkpoint": "resunet_2025062500_6h/best.pt", ...}},
                "diffusion": {"6": {...}}}}

Checkpoint paths are relative to the registry's directory (so a trainings folder can be
moved or copied whole). An entry holds at least ``checkpoint``; trainings add the init,
hyper-parameter set, best epoch, scores and time. Updates are read-modify-write under
a file lock and written atomically. The file is validated whenever it is read: bad
UTF-8, bad JSON, a lead that is not a whole number or an entry without ``checkpoint``
are one :class:`~pqpf.errors.InputFileError` naming the file. The format-1 file of
pqpf 0.x (leads at the top level) is read as the ``resunet`` entries.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pqpf.errors import InputFileError
from pqpf.io.atomic import atomic_write_text
from pqpf.io.jsonio import to_plain

__all__ = ["REGISTRY_FORMAT", "Registry"]

logger = logging.getLogger(__name__)

REGISTRY_FORMAT = "pqpf-registry"
_VERSION = 2


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield


class Registry:
    """The registry file at ``path``; relative checkpoint paths resolve against its folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- reading --

    def read(self) -> dict[str, dict[int, dict[str, Any]]]:
        """``{kind: {lead_h: entry}}``; empty when there is no registry yet."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise InputFileError(self.path, "registry is not UTF-8 text") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(self.path, f"unreadable registry ({exc})") from None
        if not isinstance(data, dict):
            raise InputFileError(self.path, "registry must be a JSON object")
        models = data.get("models") if data.get("format") == REGISTRY_FORMAT else {"resunet": data}
        if not isinstance(models, dict):
            raise InputFileError(self.path, "registry 'models' must be an object keyed by model kind")
        return {str(kind): self._leads(kind, entries) for kind, entries in models.items()}

    def _leads(self, kind: str, entries: Any) -> dict[int, dict[str, Any]]:
        if not isinstance(entries, dict):
            raise InputFileError(self.path, f"registry entries of {kind!r} must be an object keyed by lead")
        out: dict[int, dict[str, Any]] = {}
        for key, entry in entries.items():
            try:
                lead = int(key)
            except (TypeError, ValueError):
                lead = -1
            if lead < 0 or str(lead) != str(key).strip():
                raise InputFileError(self.path, f"registry lead {key!r} of {kind!r} is not a whole number of hours")
            if not isinstance(entry, dict) or not isinstance(entry.get("checkpoint"), str) or not entry["checkpoint"]:
                raise InputFileError(self.path, f"registry entry {kind}/{key} has no 'checkpoint'")
            out[lead] = entry
        return out

    def entry(self, kind: str, lead_h: int) -> dict[str, Any] | None:
        """The entry of ``kind`` for ``lead_h``, or None."""
        return self.read().get(kind, {}).get(int(lead_h))

    def resolve(self, checkpoint: str) -> Path:
        """A checkpoint path of an entry, made absolute."""
        path = Path(checkpoint)
        return path if path.is_absolute() else self.path.parent / path

    def checkpoint(self, kind: str, lead_h: int) -> Path | None:
        """The checkpoint registered for ``kind`` and ``lead_h``, or None."""
        entry = self.entry(kind, lead_h)
        return None if entry is None else self.resolve(entry["checkpoint"])

    def nearest_lead(self, kind: str, lead_h: int, exclude_self: bool = True) -> int | None:
        """The registered lead of ``kind`` closest to ``lead_h`` (ties: the shorter lead)."""
        leads = [x for x in self.read().get(kind, {}) if not (exclude_self and x == lead_h)]
        return min(leads, key=lambda x: (abs(x - lead_h), x)) if leads else None

    # -- writing --

    def _write(self, models: dict[str, dict[int, dict[str, Any]]]) -> None:
        ordered = {kind: {str(lead): models[kind][lead] for lead in sorted(models[kind])}
                   for kind in sorted(models) if models[kind]}
        text = json.dumps({"format": REGISTRY_FORMAT, "format_version": _VERSION, "models": to_plain(ordered)},
                          indent=2)
        atomic_write_text(self.path, text + "\n")

    def relative(self, checkpoint: Path) -> str:
        """``checkpoint`` relative to the registry's folder when inside it."""
        try:
            return str(Path(checkpoint).relative_to(self.path.parent))
        except ValueError:
            return str(checkpoint)

    def update(self, kind: str, lead_h: int, entry: dict[str, Any]) -> Path:
        """Record ``entry`` as the model of ``kind`` for ``lead_h`` (locked, atomic)."""
        if not entry.get("checkpoint"):
            raise ValueError("a registry entry needs a 'checkpoint'")
        with _locked(self.path):
            models = self.read()
            models.setdefault(kind, {})[int(lead_h)] = entry
            self._write(models)
        return self.path

    def remove_if_in(self, kind: str, lead_h: int, run_dir: Path) -> bool:
        """Remove the entry of ``kind``/``lead_h`` if its checkpoint lies in ``run_dir``
        (about to be deleted), so inference never follows it to a file that is gone."""
        if not self.path.is_file():
            return False
        with _locked(self.path):
            models = self.read()
            entry = models.get(kind, {}).get(int(lead_h))
            if entry is None or self.resolve(entry["checkpoint"]).parent != Path(run_dir):
                return False
            del models[kind][int(lead_h)]
            self._write(models)
        logger.warning("removed %s lead %d h from the registry until this training finishes", kind, lead_h)
        return True
