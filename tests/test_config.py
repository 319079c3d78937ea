import dataclasses
from pathlib import Path

import pytest

from pqpf.config import config_to_ini, load_config, resolve_config_path
from pqpf.errors import ConfigError
from pqpf.hparams import default_hparams_file, hparams_names, load_hparams

ROOT = Path(__file__).resolve().parent.parent
PATHS = """[paths]
graf_dir = graf/new
graf_dir_old = graf/old
graf_terrain_grib = terrain.grb2
terrain_file = ~/terrain.nc
mrms_raw_dir = $PQPF_TEST_MRMS/raw
mrms_remapped_dir = ${PQPF_TEST_UNSET:-/fallback}/remapped
patch_dir = patches
trainings_dir = trainings
graf_laptop_dir = graf
probs_dir = probs
plots_dir = plots
"""


def write(tmp_path, text, name="c.ini"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["config_hdo.ini", "config_laptop.ini"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / name)
    assert cfg.paths.graf_archive_switch.strftime("%Y%m%d%H") == "2024040512"
    assert cfg.graf.lead_min_h == 1 and cfg.graf.lead_max_h >= 12
    assert all(isinstance(getattr(cfg.paths, f.name), Path) or f.name == "graf_archive_switch"
               for f in dataclasses.fields(cfg.paths))


def test_paths_expand_home_vars_defaults_and_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("PQPF_TEST_MRMS", "/data/mrms")
    monkeypatch.delenv("PQPF_TEST_UNSET", raising=False)
    cfg = load_config(write(tmp_path, PATHS))
    assert cfg.paths.graf_dir == tmp_path / "graf/new"
    assert cfg.paths.terrain_file == Path.home() / "terrain.nc"
    assert cfg.paths.mrms_raw_dir == Path("/data/mrms/raw")
    assert cfg.paths.mrms_remapped_dir == Path("/fallback/remapped")
    assert cfg.mrms.qpe_grib_id == (209, 6, 37)


def test_unset_variable_names_file_section_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PQPF_TEST_MRMS", raising=False)
    path = write(tmp_path, PATHS)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "[paths] mrms_raw_dir" in msg and "PQPF_TEST_MRMS" in msg


def test_missing_unknown_and_bad_keys_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PQPF_TEST_MRMS", "/x")
    missing = PATHS.replace("patch_dir = patches\n", "")
    with pytest.raises(ConfigError, match=r"\[paths\] patch_dir: required key is missing"):
        load_config(write(tmp_path, missing))
    with pytest.raises(ConfigError, match=r"\[graf\] unknown key 'leadmax'"):
        load_config(write(tmp_path, PATHS + "[graf]\nleadmax = 3\n"))
    with pytest.raises(ConfigError, match=r"\[graf\] lead_max_h: expected int"):
        load_config(write(tmp_path, PATHS + "[graf]\nlead_max_h = many\n"))
    with pytest.raises(ConfigError, match=r"unknown section \[grafs\]"):
        load_config(write(tmp_path, PATHS + "[grafs]\n"))
    with pytest.raises(ConfigError, match="not a valid date"):
        load_config(write(tmp_path, PATHS + "graf_archive_switch = 2024023112\n"))
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.ini")


def test_config_roundtrips_through_ini(tmp_path, monkeypatch):
    monkeypatch.setenv("PQPF_TEST_MRMS", "/x")
    cfg = load_config(write(tmp_path, PATHS + "[patches]\ncycles = 0, 6, 12, 18\n"))
    again = load_config(write(tmp_path, config_to_ini(cfg), "again.ini"))
    assert dataclasses.replace(again, source=cfg.source) == cfg
    assert again.patches.cycles == (0, 6, 12, 18)


def test_remote_dir_is_not_expanded_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("PQPF_TEST_MRMS", "/x")
    cfg = load_config(write(tmp_path, PATHS + "[remote]\nremote_graf_dir = ~/graf\n"))
    assert cfg.remote.remote_graf_dir == "~/graf"


def test_config_path_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("PQPF_CONFIG", str(tmp_path / "env.ini"))
    assert resolve_config_path("cli.ini", tmp_path) == Path("cli.ini")
    assert resolve_config_path(None, tmp_path) == tmp_path / "env.ini"
    monkeypatch.delenv("PQPF_CONFIG")
    assert resolve_config_path(None, tmp_path) == tmp_path / "config_laptop.ini"


def test_hparams_inherit_through_anchors():
    tiny = load_hparams("tiny")
    default = load_hparams("default")
    assert {"default", "laptop", "tiny"} <= set(hparams_names())
    assert tiny.model.base_width == 8 and default.model.base_width == 32
    # inherited unchanged from the base
    assert tiny.model.bin_edges_mm == default.model.bin_edges_mm
    assert tiny.weight_decay == default.weight_decay


def _shipped_plus(text: str) -> str:
    """The shipped hyper-parameter file (whose ``_base`` defines every key) plus ``text``."""
    return default_hparams_file().read_text() + "\n" + text


def test_hparams_errors_name_the_problem(tmp_path):
    path = write(tmp_path, _shipped_plus("ok:\n  <<: *base\n  epochs: 3\nbad:\n  <<: *base\n  epoch: 4\n"),
                 "h.yaml")
    assert load_hparams("ok", path).epochs == 3
    with pytest.raises(ConfigError, match=r"bad: unknown key 'epoch'"):
        load_hparams("bad", path)
    with pytest.raises(ConfigError, match=r"no hyper-parameter set named 'nope' \(have: .*bad, .*ok"):
        load_hparams("nope", path)


def test_hparams_values_live_in_the_yaml_only_and_a_missing_key_is_named(tmp_path):
    import dataclasses

    from pqpf.hparams import HParams, ModelHParams

    # the dataclasses hold no defaults: the YAML's _base is the one place values live
    for cls in (HParams, ModelHParams):
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)), cls
    path = write(tmp_path, "lonely:\n  epochs: 3\n", "h.yaml")
    with pytest.raises(ConfigError, match=r"lonely: missing key\(s\) model, loss, log_score_weight, time_features"):
        load_hparams("lonely", path)


def test_thresholds_that_are_not_bin_edges_fail_when_the_hparams_are_loaded():
    with pytest.raises(ConfigError, match=r"thresholds_mm disagree: threshold 0.3 mm is not a bin edge"):
        load_hparams("tiny", thresholds_mm=(0.3, 1.0))
    assert load_hparams("tiny", thresholds_mm=(0.25, 1.0)).name == "tiny"


@pytest.mark.parametrize("section, line, message", [
    ("probability", "thresholds_mm = 1, 0.5", "thresholds_mm must be positive and increasing"),
    ("inference", "stride_px = -1", "stride_px must be >= 0"),
    ("inference", "batch_size = -2", "batch_size must be >= 0"),
    ("inference", "pad_mode = mirror", "pad_mode must be one of none, reflect, replicate"),
    ("inference", "calibrate = maybe", "calibrate must be one of auto, true, false"),
    ("patches", "cycles = 0, 24", "cycles must be hours 0..23"),
    ("patches", "split_fractions = 0, 0.5, 0.5", "split_fractions must be three shares"),
    ("mrms", "min_quality = 1.5", "min_quality must be in [0, 1]"),
    ("mrms", "remap_method = cubic", "remap_method must be one of conservative, nearest, bilinear"),
    # issue 11 item 10: non-finite numbers and a share so small that its block pattern explodes
    ("probability", "reference_sigma_px = inf", "reference_sigma_px: expected a finite number, got 'inf'"),
    ("patches", "wet_threshold_mm = nan", "wet_threshold_mm: expected a finite number, got 'nan'"),
    ("mrms", "min_quality = -inf", "min_quality: expected a finite number"),
    ("patches", "split_fractions = 0.7, 0.3, 1e-12", "each share must be 0 or at least 1 % of the total"),
])
def test_bad_values_fail_at_load_time_naming_file_and_section(tmp_path, monkeypatch, section, line, message):
    monkeypatch.setenv("PQPF_TEST_MRMS", "/x")
    path = write(tmp_path, PATHS + f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: [{section}]") and message in str(err.value)


@pytest.mark.parametrize("line, setting", [("", "auto"), ("calibrate = auto", "auto"), ("calibrate = yes", "true"),
                                           ("calibrate = True", "true"), ("calibrate = off", "false"),
                                           ("calibrate = 0", "false")])
def test_calibrate_setting_applies_a_cross_fitted_map_by_default(tmp_path, monkeypatch, line, setting):
    monkeypatch.setenv("PQPF_TEST_MRMS", "/x")
    inf = load_config(write(tmp_path, PATHS + f"[inference]\n{line}\n")).inference
    assert inf.calibrate == setting
    applies = {fitted_on: inf.applies_calibration(fitted_on)
               for fitted_on in (None, "validation", "validation + out-of-fold")}
    assert applies == {"auto": {None: False, "validation": False, "validation + out-of-fold": True},
                       "true": {None: False, "validation": True, "validation + out-of-fold": True},
                       "false": {None: False, "validation": False, "validation + out-of-fold": False}}[setting]


def test_shipped_sets_for_real_archives_cross_fit_their_calibration():
    assert load_hparams("default").calibration_folds == 3 and load_hparams("laptop").calibration_folds == 3
    assert load_hparams("demo").calibration_folds == 0 and load_hparams("tiny").calibration_folds == 0
    # the demo with the real-archive calibration: the same network and training, three folds
    demo, calibrated = dataclasses.asdict(load_hparams("demo")), dataclasses.asdict(load_hparams("demo_calibrated"))
    assert {k for k in demo if demo[k] != calibrated[k]} == {"name", "calibration_folds"}
    assert calibrated["calibration_folds"] == load_hparams("laptop").calibration_folds


def test_the_log_score_is_an_option_and_old_records_load_without_it(tmp_path):
    from pqpf.hparams import hparams_from_dict, hparams_to_dict

    for name in ("default", "laptop", "demo", "demo_calibrated", "tiny"):
        assert load_hparams(name).log_score_weight == 0.0 and load_hparams(name).loss == "rps"
    path = write(tmp_path, _shipped_plus("mine:\n  <<: *demo\n  log_score_weight: 1.0\n"), "h.yaml")
    assert load_hparams("mine", path).log_score_weight == 1.0
    record = hparams_to_dict(load_hparams("mine", path))
    assert hparams_from_dict(record, "new checkpoint").log_score_weight == 1.0
    del record["log_score_weight"]  # a checkpoint from before the key was trained on the RPS alone
    assert hparams_from_dict(record, "old checkpoint").log_score_weight == 0.0


def test_bad_hyper_parameter_values_are_config_errors(tmp_path):
    path = write(tmp_path, _shipped_plus("a:\n  <<: *base\n  model: {<<: *base_model, norm: layer}\n"
                                         "b:\n  <<: *base\n  loss: mae\n"
                                         "c:\n  <<: *base\n  log_score_weight: -1\n"), "h.yaml")
    with pytest.raises(ConfigError, match=r"c: log_score_weight must be >= 0, got -1"):
        load_hparams("c", path)
    with pytest.raises(ConfigError, match=r"a.model: norm must be one of batch, group, instance"):
        load_hparams("a", path)
    with pytest.raises(ConfigError, match=r"b: loss must be one of rps, crps, threshold"):
        load_hparams("b", path)
