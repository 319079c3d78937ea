import datetime as dt
from pathlib import Path

import pytest

from pqpf.config import load_config
from pqpf.layout import (
    graf_archive_path,
    graf_filename,
    graf_laptop_path,
    graf_remote_path,
    mrms_raw_path,
    patch_file_path,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cfg(tmp_path):
    text = (ROOT / "config_laptop.ini").read_text().replace("${PQPF_DATA:-~/python/resnet_data}", str(tmp_path))
    text = text.replace("remote_graf_dir =", "remote_graf_dir = /arch")
    (tmp_path / "c.ini").write_text(text)
    return load_config(tmp_path / "c.ini")


def test_graf_name_follows_winc_convention_with_unpadded_lead(cfg):
    init = dt.datetime(2025, 12, 1, 0)
    assert graf_filename(cfg, init, 6) == (
        "grid.hdo-graf_conus.20251201T060000Z.20251201T000000Z.PT6H.CONUS@4km.APCP.SFC.grb2")
    assert graf_filename(cfg, init, 36).startswith("grid.hdo-graf_conus.20251202T120000Z.")
    assert ".PT36H." in graf_filename(cfg, init, 36)


def test_archive_switch_is_inclusive_at_2024040512(cfg, tmp_path):
    last_old = dt.datetime(2024, 4, 5, 12)
    first_new = dt.datetime(2024, 4, 5, 18)
    old = graf_archive_path(cfg, last_old, 1)
    new = graf_archive_path(cfg, first_new, 1)
    assert old.parent == tmp_path / "graf/hdo-graflr_conus/20240405/12"
    assert old.name.startswith("grid.hdo-graflr_conus.20240405T13")
    assert new.parent == tmp_path / "graf/hdo-graf_conus/20240405/18"
    assert new.name.startswith("grid.hdo-graf_conus.")


def test_laptop_and_remote_mirror_the_archive_layout(cfg, tmp_path):
    init = dt.datetime(2025, 12, 4, 12)
    assert graf_laptop_path(cfg, init, 12) == graf_archive_path(cfg, init, 12)
    assert graf_remote_path(cfg, init, 12) == "/arch/hdo-graf_conus/20251204/12/" + graf_filename(cfg, init, 12)


def test_mrms_raw_and_patch_paths(cfg, tmp_path):
    valid = dt.datetime(2022, 8, 9, 15)
    assert mrms_raw_path(cfg, "MultiSensor_QPE_01H_Pass2_00.00", valid) == (
        tmp_path / "mrms_raw/MultiSensor_QPE_01H_Pass2_00.00/20220809/"
        "MRMS_MultiSensor_QPE_01H_Pass2_00.00_20220809-150000.grib2.gz")
    assert patch_file_path(cfg, "validation", dt.datetime(2025, 12, 1), 12).name == (
        "GRAF_Unet_data_validation_2025120100_12h.cPick")
    with pytest.raises(ValueError):
        patch_file_path(cfg, "training", dt.datetime(2025, 12, 1), 12)
