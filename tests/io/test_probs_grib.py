"""GRIB2 probabilities (template 4.9): read back by pygrib, ecCodes and ecCodes' own tools."""

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pygrib
import pyproj  # noqa: F401  (import order: pyproj and pygrib before eccodes)
import pytest
from conftest import HRRR_CROP, HRRR_FULL, RealData, require  # type: ignore[import-not-found,unused-ignore]
from numpy.typing import NDArray

# isort: split
import eccodes

from pqpf.errors import InputFileError, PqpfError
from pqpf.grid import graf_like_grid
from pqpf.io import probs_grib
from pqpf.io.grib import read_graf
from pqpf.io.grib_write import write_graf_grib2
from pqpf.io.netcdf import NcVar, write_grid_netcdf
from pqpf.io.probs_grib import (
    PACKINGS,
    ProbabilityGribError,
    encode_probability_grib2,
    read_probability_grib2,
    scaled_threshold,
    write_probability_grib2,
)

INIT = dt.datetime(2024, 6, 1, 12)
LEAD = 6
THRESHOLDS = [0.25, 1.0, 2.5, 5.0, 10.0, 25.0]
#: (scale factor, scaled value) of THRESHOLDS: the smallest exact scale factor.
LIMITS = [(2, 25), (0, 1), (1, 25), (0, 5), (0, 10), (0, 25)]
#: Keys of grid definition template 3.30 compared with the template message's.
GRID_KEYS = [
    "gridDefinitionTemplateNumber", "gridType", "Nx", "Ny", "numberOfDataPoints", "shapeOfTheEarth",
    "latitudeOfFirstGridPoint", "longitudeOfFirstGridPoint", "LaD", "LoV", "Latin1", "Latin2",
    "Dx", "Dy", "scanningMode", "resolutionAndComponentFlags", "projectionCentreFlag",
]
#: Packing precision: percent kept to 0.1 %, so a fraction within 0.0005 (+ float32 rounding).
PREC = 0.0005 + 1e-7


def _rain(shape: tuple[int, int], seed: int = 0) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(shape) < 0.3, rng.gamma(0.6, 3.0, shape), 0.0).astype(np.float32)


def _probabilities(shape: tuple[int, int], n: int = 6, seed: int = 1) -> NDArray[np.float32]:
    """Smooth fields decreasing with the threshold, with exact 0 and 1, and a NaN block."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 4, nx), indexing="ij")
    base = 0.5 + 0.5 * np.sin(xx) * np.cos(yy)
    fields = [np.clip(base * (1.0 - k / n) + 0.01 * rng.standard_normal(shape), 0, 1) for k in range(n)]
    prob = np.stack(fields).astype(np.float32)
    prob[:, 0, 0], prob[:, 0, 1] = 0.0, 1.0
    prob[:, 5:9, 10:30] = np.nan  # 80 missing points per threshold
    return prob


@pytest.fixture(scope="module")
def graf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GRAF-like file from the synthetic archive's writer (demo grid, 200 x 250)."""
    path = tmp_path_factory.mktemp("graf") / "graf.grb2"
    write_graf_grib2(path, graf_like_grid("demo"), _rain((200, 250)), INIT, LEAD)
    return path


@pytest.fixture(scope="module")
def probs_file(tmp_path_factory: pytest.TempPathFactory, graf_file: Path) -> Path:
    path = tmp_path_factory.mktemp("probs") / f"{INIT:%Y%m%d%H}_{LEAD}h_probs.grib2"
    write_probability_grib2(path, graf_file, _probabilities((200, 250)), THRESHOLDS, INIT, LEAD)
    return path


def _section(message: bytes, number: int) -> bytes:
    """Section ``number`` of a GRIB2 message, found by walking the section lengths."""
    pos = 16
    while pos < len(message) - 4:
        length = int.from_bytes(message[pos:pos + 4], "big")
        if message[pos + 4] == number:
            return message[pos:pos + length]
        pos += length
    raise AssertionError(f"no section {number}")


def _messages(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while (start := data.find(b"GRIB", pos)) >= 0:
        end = start + int.from_bytes(data[start + 8:start + 16], "big")
        out.append(data[start:end])
        pos = end
    return out


def _eccodes_messages(path: Path) -> list[Any]:
    handles: list[Any] = []
    with open(path, "rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            handles.append(h)
    return handles


# --------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "expected"), [
    (0.25, (2, 25)), (1, (0, 1)), (2.5, (1, 25)), (5, (0, 5)), (10, (0, 10)), (25, (0, 25)),
    (0.254, (3, 254)), (0.0, (0, 0)), (40.0, (0, 40)), (np.float32(0.1), (1, 1)), (np.float32(1.5), (1, 15)),
])
def test_scaled_threshold_is_exact_with_the_smallest_scale_factor(threshold: float, expected: tuple[int, int]) -> None:
    assert scaled_threshold(threshold) == expected


@pytest.mark.parametrize("threshold", [1.0 / 3.0, 0.00001, -1.0, float("nan"), float("inf"), 5e9])
def test_threshold_not_representable_is_refused(threshold: float) -> None:
    with pytest.raises(ProbabilityGribError, match="threshold"):
        scaled_threshold(threshold)


# --------------------------------------------------------------------------------------
# pygrib and ecCodes read the product back
# --------------------------------------------------------------------------------------


def test_pygrib_reads_every_threshold_as_template_4_9_above_lower_limit(probs_file: Path) -> None:
    msgs = pygrib.open(str(probs_file)).read()
    assert len(msgs) == 6
    valid = INIT + dt.timedelta(hours=LEAD)
    for k, (msg, (scale, value)) in enumerate(zip(msgs, LIMITS, strict=True)):
        assert msg["productDefinitionTemplateNumber"] == 9
        assert (msg["discipline"], msg["parameterCategory"], msg["parameterNumber"]) == (0, 1, 8)
        assert msg["probabilityType"] == 3  # Code table 4.9: above lower limit
        assert (msg["scaleFactorOfLowerLimit"], msg["scaledValueOfLowerLimit"]) == (scale, value)
        assert msg.is_missing("scaleFactorOfUpperLimit") and msg.is_missing("scaledValueOfUpperLimit")
        assert msg["lowerLimit"] == pytest.approx(THRESHOLDS[k], abs=1e-12)
        assert (msg["forecastProbabilityNumber"], msg["totalNumberOfForecastProbabilities"]) == (k + 1, 6)
        # 1-h accumulation ending at the lead, reference time = init
        assert (msg["dataDate"], msg["dataTime"]) == (20240601, 1200)
        assert msg["significanceOfReferenceTime"] == 1 and msg["typeOfProcessedData"] == "fc"  # 1, forecast products
        assert msg["typeOfStatisticalProcessing"] == 1 and msg["typeOfTimeIncrement"] == 2
        assert (msg["lengthOfTimeRange"], msg["indicatorOfUnitForTimeRange"]) == (1, 1)
        assert (msg["forecastTime"], msg["indicatorOfUnitOfTimeRange"]) == (LEAD - 1, 1)
        assert msg["stepRange"] == "5-6" and msg["endStep"] == 6
        assert (msg["validityDate"], msg["validityTime"]) == (20240601, 1800)
        end = tuple(msg[f"{u}OfEndOfOverallTimeInterval"] for u in ("year", "month", "day", "hour", "minute"))
        assert end == (valid.year, valid.month, valid.day, valid.hour, 0)
        assert msg["typeOfFirstFixedSurface"] == "sfc" and msg["typeOfGeneratingProcess"] == 5  # 1: surface
        # packing: complex + spatial differencing at 0.1 %, bitmap for the missing points
        assert msg["dataRepresentationTemplateNumber"] == 3 and msg["orderOfSpatialDifferencing"] == 2
        assert (msg["decimalScaleFactor"], msg["binaryScaleFactor"]) == (1, 0)
        assert msg["bitMapIndicator"] == 0 and msg["numberOfMissing"] == 80


def test_pygrib_values_are_percent_within_packing_precision_and_missing_is_masked(probs_file: Path) -> None:
    prob = _probabilities((200, 250))
    for k, msg in enumerate(pygrib.open(str(probs_file)).read()):
        values = msg.values
        assert np.ma.isMaskedArray(values)
        np.testing.assert_array_equal(np.ma.getmaskarray(values), np.isnan(prob[k]))
        expected = np.round(prob[k].astype(np.float64) * 100, 1)  # percent, kept to 0.1 %
        ok = ~np.isnan(prob[k])
        np.testing.assert_allclose(values.data[ok], expected[ok], rtol=0, atol=1e-9)
        assert (values[0, 0], values[0, 1]) == (0.0, 100.0)


def test_eccodes_reads_the_same_keys_and_values(probs_file: Path) -> None:
    prob = _probabilities((200, 250))
    handles = _eccodes_messages(probs_file)
    try:
        assert len(handles) == 6
        for k, h in enumerate(handles):
            get = eccodes.codes_get
            assert get(h, "productDefinitionTemplateNumber") == 9 and get(h, "probabilityType") == 3
            assert (get(h, "scaleFactorOfLowerLimit"), get(h, "scaledValueOfLowerLimit")) == LIMITS[k]
            assert eccodes.codes_is_missing(h, "scaledValueOfUpperLimit") == 1
            assert get(h, "stepRange", str) == "5-6" and get(h, "lengthOfTimeRange") == 1
            assert (get(h, "validityDate"), get(h, "validityTime")) == (20240601, 1800)
            values = eccodes.codes_get_values(h).reshape(200, 250)
            missing = values == get(h, "missingValue")
            np.testing.assert_array_equal(missing, np.isnan(prob[k]))
            assert get(h, "numberOfMissing") == 80
            np.testing.assert_allclose(values[~missing] / 100.0, prob[k][~missing], rtol=0, atol=PREC)
    finally:
        for h in handles:
            eccodes.codes_release(h)


@pytest.mark.parametrize("packing", sorted(PACKINGS))
def test_read_back_is_within_packing_precision_for_every_packing(tmp_path: Path, graf_file: Path, packing: str) -> None:
    prob = _probabilities((200, 250))
    path = write_probability_grib2(tmp_path / "p.grib2", graf_file, prob, THRESHOLDS, INIT, LEAD, packing=packing)
    back = read_probability_grib2(path)
    np.testing.assert_array_equal(back.thresholds_mm, THRESHOLDS)
    assert back.init == INIT and back.lead_h == LEAD
    assert back.prob.dtype == np.float32 and back.prob.shape == (6, 200, 250)
    np.testing.assert_array_equal(np.isnan(back.prob), np.isnan(prob))
    assert int(np.isnan(back.prob).sum()) == 6 * 80
    np.testing.assert_allclose(back.prob, prob, rtol=0, atol=PREC, equal_nan=True)
    assert (back.prob[:, 0, 0] == 0).all() and (back.prob[:, 0, 1] == 1).all()
    template_number = {"complex": 3, "ccsds": 42, "simple": 0}[packing]
    assert {m["dataRepresentationTemplateNumber"] for m in pygrib.open(str(path)).read()} == {template_number}
    # identical input gives identical bytes
    again = encode_probability_grib2(graf_file, prob, THRESHOLDS, INIT, LEAD, packing=packing)
    assert again == path.read_bytes()


def test_all_missing_threshold_reads_back_all_missing(tmp_path: Path, graf_file: Path) -> None:
    prob = _probabilities((200, 250), n=2)
    prob[1] = np.nan
    back = read_probability_grib2(write_probability_grib2(tmp_path / "p.grib2", graf_file, prob, [1, 2], INIT, LEAD))
    assert int(np.isnan(back.prob[1]).sum()) == 200 * 250
    np.testing.assert_allclose(back.prob[0], prob[0], rtol=0, atol=PREC, equal_nan=True)


# --------------------------------------------------------------------------------------
# the grid: copied from the template, same lat/lon as the netCDF product
# --------------------------------------------------------------------------------------


def test_grid_section_is_the_templates_byte_for_byte(probs_file: Path, graf_file: Path) -> None:
    template = graf_file.read_bytes()
    messages = _messages(probs_file.read_bytes())
    assert len(messages) == 6
    assert {_section(m, 3) for m in messages} == {_section(template, 3)}
    tmsg = pygrib.fromstring(template)
    for msg in pygrib.open(str(probs_file)).read():
        assert {key: msg[key] for key in GRID_KEYS} == {key: tmsg[key] for key in GRID_KEYS}
        assert msg["gridDefinitionTemplateNumber"] == 30


def test_lat_lon_equal_grid_lonlat_and_the_netcdf_products(tmp_path: Path, probs_file: Path, graf_file: Path) -> None:
    graf = read_graf(graf_file, LEAD, init=INIT)
    back = read_probability_grib2(probs_file)
    assert back.grid == graf.grid  # the same Grid, field for field
    lon, lat = graf.grid.lonlat()
    # pygrib and ecCodes compute the coordinates themselves from section 3
    plat, plon = pygrib.open(str(probs_file)).message(1).latlons()
    h = eccodes.codes_new_from_message(_messages(probs_file.read_bytes())[0])
    try:
        elat = eccodes.codes_get_array(h, "latitudes").reshape(lat.shape)
        elon = eccodes.codes_get_array(h, "longitudes").reshape(lat.shape)
    finally:
        eccodes.codes_release(h)
    for other_lat, other_lon in ((plat, plon), (elat, elon)):
        other_lon = (other_lon + 180.0) % 360.0 - 180.0
        np.testing.assert_allclose(other_lat, lat, rtol=0, atol=1e-9)
        np.testing.assert_allclose(other_lon, lon, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(other_lat.astype(np.float32), lat.astype(np.float32))
        np.testing.assert_array_equal(other_lon.astype(np.float32), lon.astype(np.float32))
    # the netCDF product stores float32 lat/lon of the GRAF grid: identical to the GRIB's
    import netCDF4

    nc_path = write_grid_netcdf(tmp_path / "p.nc", graf.grid,
                                {"prob_exceed": NcVar(back.prob, {"units": "1"}, dims=("threshold", "y", "x"))},
                                coords={"threshold": (np.asarray(THRESHOLDS, np.float32), {"units": "mm"})})
    blon, blat = back.grid.lonlat()
    with netCDF4.Dataset(nc_path) as nc:
        np.testing.assert_array_equal(nc["lat"][:], blat.astype(np.float32))
        np.testing.assert_array_equal(nc["lon"][:], blon.astype(np.float32))


def test_real_hrrr_template_keeps_grid_and_producer(tmp_path: Path, real_data: RealData) -> None:
    template = real_data(HRRR_CROP)
    hrrr = read_graf(template, 12)
    assert hrrr.init_time == dt.datetime(2020, 12, 14)
    prob = _probabilities(hrrr.grid.shape, n=3)
    path = write_probability_grib2(tmp_path / "p.grib2", template, prob, [0.25, 1, 2.5], dt.datetime(2020, 12, 14), 12)
    assert {_section(m, 3) for m in _messages(path.read_bytes())} == {_section(template.read_bytes(), 3)}
    back = read_probability_grib2(path)
    assert back.grid == hrrr.grid and back.grid.shape == (150, 200)
    assert back.init == dt.datetime(2020, 12, 14) and back.lead_h == 12
    np.testing.assert_allclose(back.prob, prob, rtol=0, atol=PREC, equal_nan=True)
    tmsg = pygrib.open(str(template)).message(1)
    for msg in pygrib.open(str(path)).read():
        assert {key: msg[key] for key in GRID_KEYS} == {key: tmsg[key] for key in GRID_KEYS}
        assert msg["jScansPositively"] == 1  # HRRR scans from the south, as the template
        assert (msg["centre"], msg["generatingProcessIdentifier"]) == ("kwbc", 83)  # kept: NCEP (7), HRRR
        assert msg["stepRange"] == "11-12" and msg["probabilityType"] == 3
    lon, lat = back.grid.lonlat()
    plat, plon = pygrib.open(str(path)).message(1).latlons()
    np.testing.assert_array_equal(plat.astype(np.float32), lat.astype(np.float32))
    np.testing.assert_array_equal(((plon + 180) % 360 - 180).astype(np.float32), lon.astype(np.float32))


def test_full_hrrr_file_gives_its_first_messages_grid_and_options_override(tmp_path: Path, real_data: RealData) -> None:
    template = real_data(HRRR_FULL)  # two messages on one 1059 x 1799 grid; the first is used
    prob = np.zeros((2, 1059, 1799), np.float32)
    prob[0, 500:600, 900:1000] = 0.734
    path = write_probability_grib2(tmp_path / "p.grib2", template, prob, [1, 10], dt.datetime(2020, 12, 14), 12,
                                   centre=255, sub_centre=0, generating_process_identifier=1, production_status=2)
    first = _messages(template.read_bytes())[0]
    assert {_section(m, 3) for m in _messages(path.read_bytes())} == {_section(first, 3)}
    msg = pygrib.open(str(path)).message(1)
    assert (msg["centre"], msg["generatingProcessIdentifier"], msg["productionStatusOfProcessedData"]) == ("255", 1, 2)
    assert msg["bitMapIndicator"] == 255  # no missing point, no bitmap
    assert msg.values[550, 950] == pytest.approx(73.4, abs=1e-9) and msg.values.sum() == pytest.approx(734000.0)


def test_local_section_of_the_template_is_dropped(tmp_path: Path, graf_file: Path) -> None:
    h = eccodes.codes_new_from_message(graf_file.read_bytes())
    try:
        eccodes.codes_set(h, "grib2LocalSectionPresent", 1)
        template = bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)
    assert template[16 + 21 + 4] == 2  # the template has a section 2
    path = write_probability_grib2(tmp_path / "p.grib2", template, _probabilities((200, 250), n=1), [1], INIT, LEAD)
    message = path.read_bytes()
    assert message[16 + 21 + 4] == 3  # section 1 is followed directly by section 3
    assert _section(message, 3) == _section(template, 3)


# --------------------------------------------------------------------------------------
# ecCodes' own command-line tools
# --------------------------------------------------------------------------------------


def _require_tool(name: str) -> None:
    require(shutil.which(name) is not None,
            f"{name} not installed (Debian package libeccodes-tools: apt-get install -y libeccodes-tools)")


def test_grib_ls_shows_the_probability_keys(probs_file: Path) -> None:
    _require_tool("grib_ls")
    keys = ["productDefinitionTemplateNumber", "probabilityType", "scaleFactorOfLowerLimit",
            "scaledValueOfLowerLimit", "stepRange", "typeOfStatisticalProcessing", "dataDate", "dataTime"]
    out = subprocess.run(["grib_ls", "-p", ",".join(keys), str(probs_file)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line == keys)
    rows = lines[header + 1:header + 7]
    assert rows == [["9", "3", str(s), str(v), "5-6", "1", "20240601", "1200"] for s, v in LIMITS]
    assert "6 of 6 messages" in out


def test_grib_dump_shows_template_4_9_and_the_limits(probs_file: Path) -> None:
    _require_tool("grib_dump")
    out = subprocess.run(["grib_dump", "-O", str(probs_file)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"^\s*[\d-]+\s+(\w+) = (.*)$", out, flags=re.MULTILINE):
        found.setdefault(match.group(1), []).append(match.group(2).strip())
    assert [v.split()[0] for v in found["productDefinitionTemplateNumber"]] == ["9"] * 6
    assert all(v.startswith("3 [Probability of event above lower limit") for v in found["probabilityType"])
    assert all(v.startswith("8 [Total precipitation (kg m-2)") for v in found["parameterNumber"])
    assert [int(v) for v in found["scaleFactorOfLowerLimit"]] == [s for s, _ in LIMITS]
    assert [int(v) for v in found["scaledValueOfLowerLimit"]] == [v for _, v in LIMITS]
    assert found["scaledValueOfUpperLimit"] == ["MISSING"] * 6
    assert all(v.startswith("1 [Accumulation") for v in found["typeOfStatisticalProcessing"])
    assert [int(v) for v in found["lengthOfTimeRange"]] == [1] * 6
    assert [int(v) for v in found["forecastTime"]] == [LEAD - 1] * 6
    assert [int(v) for v in found["hourOfEndOfOverallTimeInterval"]] == [18] * 6
    assert all(v.startswith("3 [Grid point data - complex packing and spatial differencing")
               for v in found["dataRepresentationTemplateNumber"])
    assert [int(v) for v in found["decimalScaleFactor"]] == [1] * 6
    assert all(v.startswith("0 [A bit map applies") for v in found["bitMapIndicator"])


# --------------------------------------------------------------------------------------
# atomic writes and bad input
# --------------------------------------------------------------------------------------


def test_failure_mid_file_leaves_no_file_and_keeps_an_old_one(tmp_path: Path, graf_file: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = probs_grib._encode_threshold
    calls: list[int] = []

    def failing(ec: Any, base: Any, number: int, limit: tuple[int, int], pct: NDArray[np.float64],
                packing: str) -> bytes:
        calls.append(number)
        if number == 3:
            raise RuntimeError("killed while encoding the third threshold")
        return real(ec, base, number, limit, pct, packing)

    monkeypatch.setattr(probs_grib, "_encode_threshold", failing)
    prob = _probabilities((200, 250))
    out = tmp_path / "new.grib2"
    with pytest.raises(RuntimeError, match="third threshold"):
        write_probability_grib2(out, graf_file, prob, THRESHOLDS, INIT, LEAD)
    assert calls == [1, 2, 3]  # two messages were already written to the temporary file
    old = tmp_path / "old.grib2"
    old.write_bytes(b"previous run")
    with pytest.raises(RuntimeError):
        write_probability_grib2(old, graf_file, prob, THRESHOLDS, INIT, LEAD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.grib2"]
    assert old.read_bytes() == b"previous run"


def test_message_that_does_not_decode_to_its_input_is_not_written(tmp_path: Path, graf_file: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = probs_grib._encode_threshold

    def off_by_a_step(ec: Any, base: Any, number: int, limit: tuple[int, int], pct: NDArray[np.float64],
                      packing: str) -> bytes:
        return real(ec, base, number, limit, np.minimum(pct + 0.1, 100.0), packing)

    monkeypatch.setattr(probs_grib, "_encode_threshold", off_by_a_step)
    with pytest.raises(ProbabilityGribError, match="does not decode to the values encoded"):
        write_probability_grib2(tmp_path / "p.grib2", graf_file, _probabilities((200, 250)), THRESHOLDS, INIT, LEAD)
    assert list(tmp_path.iterdir()) == []


def _bad(prob: NDArray[Any] | None = None, thresholds: list[float] | None = None, lead: int = LEAD,
         **kw: Any) -> tuple[NDArray[Any], list[float], int, dict[str, Any]]:
    return (prob if prob is not None else _probabilities((200, 250)),
            thresholds if thresholds is not None else THRESHOLDS, lead, kw)


_P = _probabilities((200, 250))
BAD_INPUTS = {
    "above one": (_bad(prob=np.where(np.arange(250) == 7, np.float32(1.01), _P)), r"\[0, 1\].*1200 values"),
    "negative": (_bad(prob=np.where(np.arange(250) == 7, np.float32(-0.2), _P)), r"\[0, 1\].*1200 values"),
    "infinite": (_bad(prob=np.where(np.arange(250) == 7, np.float32(np.inf), _P)), r"\[0, 1\]"),
    "percent given": (_bad(prob=_P * 100), r"\[0, 1\]"),
    "too few thresholds": (_bad(thresholds=THRESHOLDS[:5]), r"shape \(6, 200, 250\), expected .*\(5, 200, 250\)"),
    "other grid": (_bad(prob=_P[:, :, :200]), r"shape \(6, 200, 200\), expected"),
    "2-d": (_bad(prob=_P[0], thresholds=[1.0]), r"shape \(200, 250\), expected"),
    "integers": (_bad(prob=np.zeros((6, 200, 250), np.int8)), "floating point"),
    "threshold 1/3": (_bad(thresholds=[0.25, 1 / 3, 2.5, 5, 10, 25]), "cannot be written exactly"),
    "unsorted": (_bad(thresholds=[1, 0.25, 2.5, 5, 10, 25]), "increase strictly"),
    "lead 0": (_bad(lead=0), "lead_h"),
    "packing": (_bad(packing="jpeg"), "unknown packing 'jpeg'; valid names: ccsds, complex, simple"),
    "centre": (_bad(centre=70000), "centre must be in 0..65535"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_error_and_no_file(tmp_path: Path, graf_file: Path, case: str) -> None:
    (prob, thresholds, lead, kw), message = BAD_INPUTS[case]
    with pytest.raises(ProbabilityGribError, match=message) as info:
        write_probability_grib2(tmp_path / "p.grib2", graf_file, prob, thresholds, INIT, lead, **kw)
    assert isinstance(info.value, PqpfError) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_template_that_is_not_grib2_names_the_file(tmp_path: Path) -> None:
    h = eccodes.codes_grib_new_from_samples("GRIB1")
    try:
        grib1 = tmp_path / "template.grb"
        grib1.write_bytes(bytes(eccodes.codes_get_message(h)))
    finally:
        eccodes.codes_release(h)
    with pytest.raises(InputFileError, match=r"template\.grb: GRIB edition 1 at byte 0, need GRIB2"):
        write_probability_grib2(tmp_path / "p.grib2", grib1, _P, THRESHOLDS, INIT, LEAD)
    with pytest.raises(InputFileError, match="grid template not found"):
        write_probability_grib2(tmp_path / "p.grib2", tmp_path / "none.grb2", _P, THRESHOLDS, INIT, LEAD)
    with pytest.raises(ProbabilityGribError, match="no GRIB2 message"):
        encode_probability_grib2(b"not grib", _P, THRESHOLDS, INIT, LEAD)
    assert [p.name for p in tmp_path.iterdir()] == ["template.grb"]


def test_reader_refuses_a_file_that_is_not_a_probability(graf_file: Path) -> None:
    with pytest.raises(InputFileError, match=r"template 4\.8 of \(0, 1, 8\), not a precipitation probability"):
        read_probability_grib2(graf_file)
