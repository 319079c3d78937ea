import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from faults.pickle_corpus import build_corpus, patch_file

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
    with pytest.raises(pickle.UnpicklingError, match="not a plain number"):  # a structured scalar with an object field
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


# --------------------------------------------------------------------------------------
# Forged files (issue 11 item 1); the full corpus is tests/faults/test_pickle_corpus.py
# --------------------------------------------------------------------------------------


def _forged(tmp_path, name, marker=None):
    corpus = build_corpus(marker or tmp_path / "PAYLOAD_RAN")
    path = tmp_path / "forged.cPick"
    path.write_bytes(patch_file(*corpus[name]))
    return path


def test_a_structured_dtype_with_a_hidden_object_field_is_refused_not_a_segfault(tmp_path):
    """numpy.dtype('V8') BUILT into a dtype with an object field and flags 0 passed the
    object check, and copying the array dereferenced the file's bytes: SIGSEGV."""
    path = _forged(tmp_path, "V8 structured dtype with an object field (SIGSEGV before)")
    code = ("from pqpf.errors import InputFileError\nfrom pqpf.io.patchfile import load_patch_file\n"
            f"try:\n    load_patch_file({str(path)!r})\nexcept InputFileError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"the loader died with status {proc.returncode}"
    assert proc.stdout == (f"{path}: refused to load: dtype '|V8' in a dtype is not a plain number "
                           "or bool type\n")


@pytest.mark.parametrize("dtype", ["U3", "S3", "M8[s]", "m8[s]", "O", "V8", "i4,f4", "f4,(2,)i4"])
def test_only_plain_number_and_bool_arrays_load(dtype):
    array = np.zeros(3, dtype=dtype)
    for protocol in (2, 5):
        with pytest.raises(pickle.UnpicklingError, match="not a plain number or bool type"):
            safe_loads(pickle.dumps({"a": array}, protocol=protocol))


def test_plain_arrays_and_scalars_round_trip_in_every_layout_and_protocol():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(4, 5, 6))
    values = {
        "f4": base.astype(np.float32), "f2": base.astype(np.float16), "big": base.astype(">f8"),
        "fortran": np.asfortranarray(base), "transposed": base.transpose(2, 0, 1),
        "strided": base[::2, :, ::3], "i8": np.arange(7, dtype=np.int64), "u1": np.arange(5, dtype=np.uint8),
        "bool": base > 0, "c8": (base + 1j * base).astype(np.complex64), "empty": np.zeros((0, 3), np.float32),
        "scalar": np.float32(2.5), "int": np.int64(-3), "nested": {"list": [1, 2.0, "x", None, b"y", (True,)]},
    }
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(values, protocol=protocol)
        back, reference = safe_loads(data), pickle.loads(data)  # the standard loader on our own data
        for key, value in values.items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(back[key], value), (protocol, key)
                assert back[key].dtype == reference[key].dtype, (protocol, key)  # numpy < 5 swaps '>f8'
                assert back[key].flags.writeable == reference[key].flags.writeable, (protocol, key)
            else:
                assert back[key] == value and type(back[key]) is type(value), (protocol, key)


def test_build_is_refused_on_numpys_own_functions_and_classes(tmp_path):
    numeric = pytest.importorskip("numpy._core.numeric")
    before = numeric._frombuffer.__defaults__
    for name in ("BUILD rewriting _frombuffer's attributes", "BUILD on the numpy.ndarray class"):
        with pytest.raises(InputFileError, match="refused to load: BUILD on a (function|type)"):
            load_patch_file(_forged(tmp_path, name))
    assert numeric._frombuffer.__defaults__ == before and not hasattr(np.ndarray, "tolist_")


@pytest.mark.parametrize("name, words", [
    ("list nested 200000 deep", "containers nested deeper than 32 levels in file"),
    ("dict nested 200000 deep", "containers nested deeper than 32 levels in file"),
    ("list holding itself", "a container holding itself at file['features'][0]"),
    ("dict holding itself", "a container holding itself at file['extra']['me']"),
])
def test_deep_and_cyclic_containers_are_one_clean_error(tmp_path, name, words):
    path = _forged(tmp_path, name)
    with pytest.raises(InputFileError) as err:
        load_patch_file(path)
    assert str(err.value) == f"{path}: refused to load: {words}"


def test_array_bytes_must_match_the_declared_shape_and_lengths_the_file_size(tmp_path):
    import tracemalloc

    with pytest.raises(InputFileError, match=r"shape \(1000000,\) and dtype <f8 in an array needs "
                                             r"8000000 bytes, the file gives 8$"):
        load_patch_file(_forged(tmp_path, "array bytes shorter than its shape"))
    tracemalloc.start()
    with pytest.raises(InputFileError, match="truncated or corrupt patch file: a buffer of 1099511627776"):
        load_patch_file(_forged(tmp_path, "BYTEARRAY8 of 2**40 bytes"))
    with pytest.raises(InputFileError, match="needs 4611686018427387904 bytes, 53 left"):
        load_patch_file(_forged(tmp_path, "BINBYTES8 of 2**62 bytes"))
    assert tracemalloc.get_traced_memory()[1] < 10_000_000
    tracemalloc.stop()
