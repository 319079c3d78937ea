import os
import pickle

import numpy as np
import pytest

from pqpf.errors import InputFileError
from pqpf.io.patchfile import (
    PatchFileWriter,
    iter_patch_file,
    load_patch_file,
    read_patch_header,
    safe_loads,
)

HEADER = {"split": "train", "init": "2025120100", "lead_h": 12, "patch_px": 8,
          "channel_names": ["a", "b"], "feature_schema_version": 1}


def record(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(n, 2, 8, 8)).astype(np.float32),
        "mrms": rng.gamma(0.5, 1.0, (n, 8, 8)).astype(np.float32),
        "origins": rng.integers(0, 100, (n, 2)).astype(np.int32),
        "weights": rng.uniform(1, 5, n).astype(np.float32),
    }


def test_stream_roundtrips_into_one_dict(tmp_path):
    path = tmp_path / "p.cPick"
    recs = [record(3, 0), record(0, 1), record(5, 2)]
    with PatchFileWriter(path, HEADER) as writer:
        for r in recs:
            writer.append(r)
    data = load_patch_file(path)
    assert data["n_patches"] == 8 and data["split"] == "train" and data["patch_px"] == 8
    assert np.array_equal(data["features"], np.concatenate([r["features"] for r in recs]))
    assert data["weights"].dtype == np.float32 and data["origins"].shape == (8, 2)
    assert read_patch_header(path)["lead_h"] == 12
    assert len(list(iter_patch_file(path))) == 4  # header + 3 records


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.cPick"
    with open(path, "wb") as fh:
        pickle.dump({"format": "pqpf-patches", "schema_version": 1}, fh)
        pickle.dump({"features": _Evil(marker)}, fh)
    with pytest.raises(InputFileError) as err:
        load_patch_file(path)
    assert "forbidden global" in str(err.value) and "system" in str(err.value)
    assert str(path) in str(err.value)
    assert not marker.exists()
    # the same payload as a bare object, and an object array, are refused too
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(pickle.dumps(_Evil(marker)))
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(pickle.dumps(np.array([1, "x", None], dtype=object)))
    with pytest.raises(pickle.UnpicklingError, match="object scalar"):  # a structured scalar with an object field
        safe_loads(pickle.dumps(np.array([(1, "x")], dtype=[("a", "i4"), ("b", "O")])[0]))
    assert not marker.exists()


def test_a_file_replaced_between_the_two_loading_passes_is_an_error(tmp_path, monkeypatch):
    """load_patch_file reads the file twice (sizes, then data); a rerun with --overwrite
    renaming a new file into place in between must not give half-filled arrays."""
    import pqpf.io.patchfile as patchfile

    path = tmp_path / "p.cPick"
    for name, seed in ((path, 0), (tmp_path / "new.cPick", 1)):
        with PatchFileWriter(name, HEADER) as writer:
            writer.append(record(4, seed))
    real_iter = patchfile.iter_patch_file
    calls = []

    def iter_then_replace(p, *args):
        calls.append(p)
        if len(calls) == 2:  # the second pass starts: another process replaces the file
            os.replace(tmp_path / "new.cPick", path)
        return real_iter(p, *args)

    monkeypatch.setattr(patchfile, "iter_patch_file", iter_then_replace)
    with pytest.raises(InputFileError, match="changed while it was being read"):
        load_patch_file(path)


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    path = tmp_path / "p.cPick"
    with PatchFileWriter(path, HEADER) as writer:
        writer.append(record(4, 0))
    blob = path.read_bytes()
    cut = tmp_path / "cut.cPick"
    cut.write_bytes(blob[: len(blob) - 40])
    with pytest.raises(InputFileError, match="truncated|corrupt"):
        load_patch_file(cut)
    other = tmp_path / "other.cPick"
    other.write_bytes(pickle.dumps({"hello": 1}))
    with pytest.raises(InputFileError, match="not a pqpf patch file"):
        load_patch_file(other)
    old = tmp_path / "old.cPick"
    old.write_bytes(pickle.dumps({"format": "pqpf-patches", "schema_version": 0}))
    with pytest.raises(InputFileError, match="regenerate"):
        load_patch_file(old)
    with pytest.raises(InputFileError, match="not found"):
        load_patch_file(tmp_path / "none.cPick")


def test_failed_writer_leaves_no_file(tmp_path):
    path = tmp_path / "p.cPick"
    with pytest.raises(ValueError, match="disagree"):
        with PatchFileWriter(path, HEADER) as writer:
            writer.append(record(2, 0))
            writer.append({"features": np.zeros((2, 2, 8, 8)), "mrms": np.zeros((3, 8, 8))})
    assert os.listdir(tmp_path) == []


def test_trailer_extras_are_returned_and_loading_does_not_hold_two_copies(tmp_path):
    import tracemalloc

    path = tmp_path / "p.cPick"
    with PatchFileWriter(path, HEADER) as writer:
        for k in range(6):
            writer.append(record(50, k))
        writer.trailer_extra["inits_used"] = ["2025110100", "2025110112"]
    size = 300 * (2 * 8 * 8 + 8 * 8 + 2 + 1) * 4  # final arrays, bytes
    tracemalloc.start()
    data = load_patch_file(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert data["inits_used"] == ["2025110100", "2025110112"] and data["n_patches"] == 300
    assert peak < 1.6 * size  # the result plus one record in flight, not the result twice
