"""Cross-fitted calibration data (hparams ``calibration_folds``): folds by init date, the
out-of-fold predictions pooled with the validation split, exact reuse on ``--resume``."""

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trainkit
import yaml

from pqpf.calibration import Calibration, CalibrationFit
from pqpf.dates import to_epoch_seconds
from pqpf.errors import ConfigError, PqpfError
from pqpf.hparams import hparams_to_dict, load_hparams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.normalisation import Normalisation
from pqpf.stages.train import patch_sets
from pqpf.stages.train import train_resunet as train
from pqpf.train.calibrate import accumulate_calibration
from pqpf.train.crossfit import date_folds, fold_training_masks
from pqpf.train.resunet import ResUNetFamily

TINY = load_hparams("tiny")
ROOT = Path(__file__).resolve().parent.parent.parent


def _valid_times(inits, lead_h):
    return np.array([to_epoch_seconds(t) + 3600 * lead_h for t in inits], dtype=np.int64)


def test_folds_are_contiguous_groups_of_init_dates_with_both_cycles_together():
    day = dt.datetime(2025, 6, 1)
    # Five dates, two cycles each, in shuffled order; lead 18 h puts the 12 UTC cycle's
    # valid time on the next day: the fold follows the init date, not the valid date.
    inits = [day + dt.timedelta(days=d, hours=h) for d in (3, 0, 4, 1, 2) for h in (0, 12)]
    folds = date_folds(_valid_times(inits, 18), 18, 2)
    by_date = {}
    for t, k in zip(inits, folds):
        by_date.setdefault(t.date(), set()).add(int(k))
    assert all(len(ks) == 1 for ks in by_date.values())  # a date never straddles two folds
    ordered = [by_date[d].pop() for d in sorted(by_date)]
    assert ordered == [0, 0, 1, 1, 1]  # contiguous; 4 and 6 patches (5 each is not possible)
    assert date_folds(_valid_times(inits, 18), 18, 5).tolist() == [
        {3: 3, 0: 0, 4: 4, 1: 1, 2: 2}[d] for d in (3, 0, 4, 1, 2) for _ in (0, 12)]


def test_folds_balance_patches_not_dates():
    # 12 dates; the first three hold 30 patches each, the other nine 2 each (dry days):
    # equal numbers of dates would put 90 of the 108 patches in the first of three folds.
    day = dt.datetime(2025, 6, 1)
    inits = [day + dt.timedelta(days=d) for d in range(12) for _ in range(30 if d < 3 else 2)]
    folds = date_folds(_valid_times(inits, 6), 6, 3)
    counts = np.bincount(folds)
    assert counts.tolist() == [30, 30, 48]  # cuts after 30 and 60 patches, the nearest to 36 and 72
    assert (np.diff(folds) >= 0).all()  # contiguous in time
    # one date holding nearly everything still leaves every fold a date
    inits = [day] * 100 + [day + dt.timedelta(days=1), day + dt.timedelta(days=2)]
    assert np.bincount(date_folds(_valid_times(inits, 6), 6, 3)).tolist() == [100, 1, 1]


def test_fold_networks_skip_the_gap_days_next_to_their_group():
    day = dt.datetime(2025, 6, 1)
    inits = [day + dt.timedelta(days=d, hours=h) for d in range(9) for h in (0, 12)]
    vt = _valid_times(inits, 6)
    folds, masks = fold_training_masks(vt, 6, 3, 1)
    assert folds.tolist() == [k for k in (0, 1, 2) for _ in range(6)]  # dates 0-2, 3-5, 6-8
    trained_dates = [sorted({inits[i].day - 1 for i in np.flatnonzero(m)}) for m in masks]
    assert trained_dates == [[4, 5, 6, 7, 8], [0, 1, 7, 8], [0, 1, 2, 3, 4]]
    _, no_gap = fold_training_masks(vt, 6, 3, 0)
    assert all(np.array_equal(m, folds != k) for k, m in enumerate(no_gap))
    with pytest.raises(PqpfError, match="calibration_fold_gap_days = 3 leaves fold 2 of 3 no training dates"):
        fold_training_masks(vt, 6, 3, 3)


def test_more_folds_than_dates_is_refused_with_the_setting_named():
    inits = [dt.datetime(2025, 6, 1, h) for h in (0, 12)] + [dt.datetime(2025, 6, 2, 0)]
    with pytest.raises(PqpfError, match="calibration_folds = 3 needs at least 3 training init dates.*has 2"):
        date_folds(_valid_times(inits, 6), 6, 3)


def test_calibration_folds_setting_is_checked_and_named_when_missing(tmp_path):
    with pytest.raises(ValueError, match="calibration_folds must be 0"):
        dataclasses.replace(TINY, calibration_folds=1)
    # the YAML is the one place values live: a user's file without the key names it
    text = ("mine:\n  model: {base_width: 8, depth: 2, attention: false, norm: batch, dropout: 0.0,\n"
            "    upsample: resize, padding: replicate, bin_edges_mm: [0.0, 0.25, 1.0, 2.5, 5.0, 10.0, 25.0, 40.0]}\n"
            "  loss: rps\n  log_score_weight: 0.0\n  time_features: false\n  batch_size: 4\n  epochs: 1\n"
            "  learning_rate: 1.0e-3\n"
            "  weight_decay: 0.0\n  patience: 1\n  min_improvement: 0.0\n  lr_schedule: plateau\n"
            "  augment: false\n  use_sampling_weights: true\n  num_workers: 0\n  seed: 1\n"
            "  ema_halflife_samples: 0\n  ema_rampup: 0.05\n  bn_stats_samples: 0\n")
    (tmp_path / "h.yaml").write_text(text)
    with pytest.raises(ConfigError, match="missing key.*calibration_folds"):
        load_hparams("mine", tmp_path / "h.yaml")
    with pytest.raises(ConfigError, match="missing key.*calibration_fold_gap_days"):
        load_hparams("mine", tmp_path / "h.yaml")
    text += "  calibration_fold_gap_days: 1\n"
    (tmp_path / "h.yaml").write_text(text + "  calibration_folds: 3\n")
    assert load_hparams("mine", tmp_path / "h.yaml").calibration_folds == 3
    with pytest.raises(ValueError, match="calibration_fold_gap_days must be >= 0"):
        dataclasses.replace(TINY, calibration_fold_gap_days=-1)
    (tmp_path / "h.yaml").write_text(text + "  calibration_folds: 2.5\n")
    with pytest.raises(ConfigError, match="calibration_folds"):
        load_hparams("mine", tmp_path / "h.yaml")


def test_pooled_sums_fit_as_one_data_set():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, (2, 500))
    o = (rng.uniform(0, 1, (2, 500)) < p ** 1.5).astype(float)
    w = rng.uniform(0.5, 2.0, 500)
    whole, first, second = CalibrationFit((1.0, 5.0)), CalibrationFit((1.0, 5.0)), CalibrationFit((1.0, 5.0))
    whole.update(p, o, w)
    first.update(p[:, :200], o[:, :200], w[:200])
    second.update(p[:, 200:], o[:, 200:], w[200:])
    first.add(second)
    np.testing.assert_allclose(first.sums, whole.sums, rtol=1e-12)
    assert first.fit() == whole.fit()
    with pytest.raises(ValueError, match="thresholds"):
        first.add(CalibrationFit((1.0,)))


def _expected_calibration(config, hp, run):
    """The pooled fit recomputed from the saved fold and main networks."""
    sets = patch_sets(config, trainkit.INIT, trainkit.LEAD)
    train_set, q = sets["train"], float(config.mrms.min_quality)
    thresholds = tuple(hp.model.bin_edges_mm[1:])
    folds = date_folds(train_set.valid_time, trainkit.LEAD, hp.calibration_folds)
    assert (np.bincount(folds) > 0).all()  # every fold holds patches
    days = (train_set.valid_time - 3600 * trainkit.LEAD) // 86400
    pooled = CalibrationFit(thresholds)
    nets = []
    for k in range(hp.calibration_folds):
        # the other folds' dates, less the calibration_fold_gap_days next to fold k's group
        lo, hi = days[folds == k].min(), days[folds == k].max()
        gap = hp.calibration_fold_gap_days
        rest = train_set.take(np.flatnonzero((days < lo - gap) | (days > hi + gap)))
        family = ResUNetFamily(hp, rest, q)
        checkpoint = load_checkpoint(run / "crossfit" / f"fold_{k + 1}" / "best.pt")
        # the fold network's input statistics are those of the other folds alone: it never saw fold k
        assert Normalisation.from_dict(checkpoint.model.normalisation) == family.normalisation
        net = family.build()
        net.load_state_dict(checkpoint.inference_weights())
        family.restore(checkpoint)
        nets.append(checkpoint.inference_weights())
        held_out = train_set.take(np.flatnonzero(folds == k))
        pooled.add(accumulate_calibration(family, net, held_out, torch.device("cpu"), hp.batch_size, thresholds,
                                          population=train_set))
    main = load_checkpoint(run / "best.pt")
    family = ResUNetFamily(hp, train_set, q)
    net = family.build()
    net.load_state_dict(main.inference_weights())
    family.restore(main)
    validation = accumulate_calibration(family, net, sets["validation"], torch.device("cpu"), hp.batch_size,
                                        thresholds)
    validation.add(pooled)
    return validation.fit(), nets, main.inference_weights()


def _same(record, calibration):
    got = Calibration.from_dict(record)
    assert got.thresholds_mm == calibration.thresholds_mm
    for a, b in zip(got.knots_x + got.knots_y, calibration.knots_x + calibration.knots_y):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def _stored(run):
    return load_checkpoint(run / "best.pt").model.extra["calibration"]


def _fold_files(run):
    return {p.relative_to(run): p.stat().st_mtime_ns for p in (run / "crossfit").rglob("*.pt")}


def test_crossfit_calibration_pools_out_of_fold_predictions_and_resume_reuses_the_folds(tmp_path):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path, spread_days=True)
    hp = dataclasses.replace(TINY, epochs=2, calibration_folds=2)
    run = train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu").run_dir
    record = _stored(run)
    assert record["fitted_on"] == "validation + out-of-fold"
    expected, fold_weights, main_weights = _expected_calibration(config, hp, run)
    _same(record, expected)
    # the fold networks are their own trainings, not copies of the main one
    for weights in fold_weights:
        assert any(not torch.equal(weights[k], main_weights[k]) for k in main_weights)
    # without the out-of-fold data the fit differs (they changed the map)
    assert Calibration.from_dict(record) != _validation_only(config, hp, run)
    assert sorted(p.name for p in (run / "crossfit").iterdir()) == ["fold_1", "fold_2"]

    # --resume after a finished training retrains nothing and refits the same map
    before = _fold_files(run)
    train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", resume=True)
    assert _fold_files(run) == before
    _same(_stored(run), expected)

    # a fold lost (interrupted before its first epoch) is trained again, identically
    for path in (run / "crossfit" / "fold_2").iterdir():
        path.unlink()
    train(config, trainkit.INIT, trainkit.LEAD, hp, device="cpu", resume=True)
    assert sorted(p.name for p in (run / "crossfit" / "fold_2").glob("*.pt")) == ["best.pt", "epoch_002.pt"]
    _same(_stored(run), expected)

    # another K on --resume: no fold is reused (its held-out dates changed), none is left over
    hp3 = dataclasses.replace(hp, calibration_folds=3)
    train(config, trainkit.INIT, trainkit.LEAD, hp3, device="cpu", resume=True)
    assert sorted(p.name for p in (run / "crossfit").iterdir()) == ["fold_1", "fold_2", "fold_3"]
    assert all(v != before.get(k) for k, v in _fold_files(run).items())
    assert (run / "crossfit" / "fold_1" / "fold.txt").read_text().startswith("calibration_folds 3, fold 0")
    _same(_stored(run), _expected_calibration(config, hp3, run)[0])
    # more folds than dates fail before any training
    with pytest.raises(PqpfError, match="calibration_folds = 40 needs"):
        train(config, trainkit.INIT, trainkit.LEAD, dataclasses.replace(hp, calibration_folds=40), device="cpu",
              overwrite=True)
    assert (run / "best.pt").is_file()

    # a fresh training deletes the earlier training's fold networks
    train(config, trainkit.INIT, trainkit.LEAD, dataclasses.replace(hp, calibration_folds=0), device="cpu",
          overwrite=True)
    assert _stored(run)["fitted_on"] == "validation" and not (run / "crossfit").exists()


def _validation_only(config, hp, run):
    sets = patch_sets(config, trainkit.INIT, trainkit.LEAD)
    family = ResUNetFamily(hp, sets["train"], float(config.mrms.min_quality))
    main = load_checkpoint(run / "best.pt")
    net = family.build()
    net.load_state_dict(main.inference_weights())
    family.restore(main)
    fit = accumulate_calibration(family, net, sets["validation"], torch.device("cpu"), hp.batch_size,
                                 tuple(hp.model.bin_edges_mm[1:]))
    return fit.fit()


def test_fold_sums_keep_each_fold_share_of_the_training_weight(tmp_path):
    # Dry periods give few patches with large weights 1/pi: the held-out groups' sums,
    # pooled, must equal the sums of the whole split, not re-weight each group to mean 1.
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path, spread_days=True)
    sets = patch_sets(config, trainkit.INIT, trainkit.LEAD)
    train_set = sets["train"]
    train_set.weights[: len(train_set) // 3] *= 5.0  # one period much more heavily weighted
    family = ResUNetFamily(TINY, train_set, float(config.mrms.min_quality))
    torch.manual_seed(0)
    net = family.build()
    thresholds = tuple(TINY.model.bin_edges_mm[1:])
    whole = accumulate_calibration(family, net, train_set, torch.device("cpu"), 16, thresholds)
    folds = date_folds(train_set.valid_time, trainkit.LEAD, 3)
    pooled = CalibrationFit(thresholds)
    for k in range(3):
        pooled.add(accumulate_calibration(family, net, train_set.take(np.flatnonzero(folds == k)),
                                          torch.device("cpu"), 16, thresholds, population=train_set))
    np.testing.assert_allclose(pooled.sums, whole.sums, rtol=1e-9, atol=1e-9)
    # normalising each group by its own mean weight would not
    own = CalibrationFit(thresholds)
    for k in range(3):
        own.add(accumulate_calibration(family, net, train_set.take(np.flatnonzero(folds == k)),
                                       torch.device("cpu"), 16, thresholds))
    assert not np.allclose(own.sums, whole.sums, rtol=1e-3)


@pytest.mark.slow
def test_crossfit_under_torchrun_fits_the_same_map_and_resume_reuses_the_folds(tmp_path):
    # two gloo ranks train every fold; rank 0 alone predicts the held-out groups and
    # decides whether a fold is reused; the stored map is the one recomputed in one process
    torch.set_num_threads(1)  # as the ranks (OMP_NUM_THREADS=1): the same summation order
    config = trainkit.make(tmp_path, spread_days=True)
    hp = dataclasses.replace(TINY, name="tiny_folds", epochs=1, calibration_folds=2)
    sets = hparams_to_dict(hp)
    sets.pop("name")
    (tmp_path / "hparams.yaml").write_text(yaml.safe_dump({"tiny_folds": sets}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train_resunet.py"), "--config", str(tmp_path / "config.ini"),
           trainkit.INIT.strftime("%Y%m%d%H"), str(trainkit.LEAD), "--hparams", str(tmp_path / "hparams.yaml"),
           "--hparams-name", "tiny_folds", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PQPF_CONFIG="")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = config.paths.trainings_dir / f"resunet_{trainkit.INIT:%Y%m%d%H}_{trainkit.LEAD}h"
    assert res.stderr.count("cross-fit fold 1/2") == 1 and res.stderr.count("cross-fit fold 2/2") == 1
    record = _stored(run)
    assert record["fitted_on"] == "validation + out-of-fold"
    _same(record, _expected_calibration(config, hp, run)[0])
    before = _fold_files(run)
    assert sorted(str(p) for p in before) == ["crossfit/fold_1/best.pt", "crossfit/fold_1/epoch_001.pt",
                                              "crossfit/fold_2/best.pt", "crossfit/fold_2/epoch_001.pt"]
    res = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _fold_files(run) == before
    _same(_stored(run), _expected_calibration(config, hp, run)[0])
