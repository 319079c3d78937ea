"""Where the ensemble products live."""

import datetime as dt
from pathlib import Path

from pqpf.config import load_config
from pqpf.layout import (
    ensemble_gif_path,
    ensemble_netcdf_path,
    ensemble_path,
    ensemble_stamps_png_path,
    ensemble_verification_dir,
)

ROOT = Path(__file__).resolve().parent.parent.parent


def test_ensemble_paths_follow_the_probabilities_naming(tmp_path):
    text = (ROOT / "config_laptop.ini").read_text().replace("${PQPF_DATA:-~/python/resnet_data}", str(tmp_path))
    (tmp_path / "c.ini").write_text(text)
    cfg = load_config(tmp_path / "c.ini")
    init = dt.datetime(2025, 12, 4, 12)
    assert ensemble_path(cfg, init, 6) == tmp_path / "probs" / "2025120412_6h_ensemble.zarr"
    assert ensemble_netcdf_path(cfg, init, 6) == tmp_path / "probs" / "2025120412_6h_ensemble.nc"
    assert ensemble_stamps_png_path(cfg, init, 6) == tmp_path / "plots" / "2025120412_6h_ensemble_stamps.png"
    assert ensemble_gif_path(cfg, init, 6) == tmp_path / "plots" / "2025120412_6h_ensemble.gif"
    assert ensemble_verification_dir(cfg, init, dt.datetime(2025, 12, 9, 0), 6) == (
        tmp_path / "plots" / "verification_ensemble_2025120412_2025120900_6h")
