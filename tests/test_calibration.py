"""Isotonic post-hoc calibration (issue 10 item 1): PAV, knots, monotonicity, storage."""

import itertools

import numpy as np
import pytest

from pqpf.calibration import Calibration, CalibrationFit, isotonic_knots, pav, reliability_rows


def _brute_force_isotonic(y, w):
    """Minimum weighted SSE over all partitions into contiguous blocks whose weighted means increase."""
    n = len(y)
    best, best_fit = np.inf, None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        means = []
        for a, b in zip(bounds, bounds[1:]):
            means.append(np.average(y[a:b], weights=w[a:b]) if w[a:b].sum() > 0 else 0.0)
        if any(m1 > m2 + 1e-12 for m1, m2 in zip(means, means[1:])):
            continue
        fit = np.concatenate([np.full(b - a, m) for (a, b), m in zip(zip(bounds, bounds[1:]), means)])
        sse = float((w * (y - fit) ** 2).sum())
        if sse < best - 1e-12:
            best, best_fit = sse, fit
    return best, best_fit


@pytest.mark.parametrize("seed", range(40))
def test_pav_equals_brute_force_on_small_cases(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    y = rng.random(n).round(2) if seed % 2 else rng.integers(0, 2, n).astype(float)
    w = rng.random(n) + 0.05
    fit = pav(y, w)
    best, _ = _brute_force_isotonic(y, w)
    assert np.all(np.diff(fit) >= -1e-12)
    assert float((w * (y - fit) ** 2).sum()) == pytest.approx(best, abs=1e-10)


def test_pav_keeps_sorted_data_and_pools_a_violation():
    assert np.allclose(pav([0.1, 0.2, 0.3]), [0.1, 0.2, 0.3])
    assert np.allclose(pav([0.4, 0.2], [1.0, 3.0]), [0.25, 0.25])


def _fitted_calibration(seed=0):
    """A forecast that is under-confident: true frequency = p**0.6, thresholds decreasing in frequency."""
    rng = np.random.default_rng(seed)
    thresholds = (0.25, 1.0, 2.5)
    fit = CalibrationFit(thresholds)
    base = rng.random((1, 200, 200)) ** 2
    prob = np.concatenate([base * s for s in (1.0, 0.7, 0.4)])
    event = (rng.random(prob.shape) < prob**0.6).astype(float)
    fit.update(prob, event, np.ones((200, 200)))
    return fit, fit.fit(), thresholds


def test_isotonic_calibration_fixes_under_confidence_and_is_monotone_in_threshold():
    fit, cal, thresholds = _fitted_calibration()
    for k in range(len(thresholds)):
        assert all(a <= b for a, b in zip(cal.knots_y[k], cal.knots_y[k][1:]))
        for mean_p, freq, weight in reliability_rows(fit, k, cal):
            if weight >= 1000:
                assert abs(mean_p - freq) < 0.05
        before = [abs(p - o) for p, o, w in reliability_rows(fit, k) if w >= 1000]
        assert max(before) > 0.08  # the raw forecast was off
    rng = np.random.default_rng(3)
    raw = np.sort(rng.random((3, 50, 50)), axis=0)[::-1]  # P(>= t) non-increasing in t
    out = cal.apply(raw, thresholds)
    assert out.dtype == np.float32 and out.shape == raw.shape
    assert np.all(np.diff(out, axis=0) <= 0)
    assert np.all((out >= 0) & (out <= 1))
    raw[1, 0, 0] = np.nan
    assert np.isnan(cal.apply(raw, thresholds)[1, 0, 0])


def test_knots_interpolate_between_blocks_and_identity_without_data():
    kx, ky = isotonic_knots([0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 1.0], [1, 1, 1, 1])
    assert kx == [0.1, 0.2, 0.3, 0.4] and ky == [0.0, 0.5, 0.5, 1.0]
    assert isotonic_knots([0.5], [1.0], [0.0]) == ([0.0, 1.0], [0.0, 1.0])


def test_calibration_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import torch

    _, cal, _ = _fitted_calibration()
    path = tmp_path / "c.pt"
    torch.save({"extra": {"calibration": cal.to_dict()}}, path)
    back = Calibration.from_dict(torch.load(path, weights_only=True)["extra"]["calibration"])
    assert back == cal
    with pytest.raises(ValueError):
        Calibration.from_dict({"method": "platt"})


def _random_checkpoint(calibration=None):
    import torch

    from pqpf.features import FEATURE_SCHEMA_VERSION, channel_names
    from pqpf.hparams import hparams_to_dict, load_hparams
    from pqpf.io.checkpoint import Checkpoint, ModelRecord
    from pqpf.model.resunet import build_resunet
    from pqpf.normalisation import Normalisation

    torch.manual_seed(0)
    hp = load_hparams("tiny")
    names = channel_names(False)
    net = build_resunet(hp.model, len(names))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    norm = Normalisation(names, (0.3, 0.1, 0.05, 0.0, 0.0), (1.0,) * len(names))
    extra = {} if calibration is None else {"calibration": calibration.to_dict()}
    record = ModelRecord("resunet", hparams_to_dict(hp), "2025070700", 1, names, FEATURE_SCHEMA_VERSION,
                         norm.to_dict(), hp.model.bin_edges_mm, (0.25, 1.0), 32, extra=extra)
    return Checkpoint(net.state_dict(), record)


def _a_calibration(edges):
    """Every interior edge: a map that raises the middle of the range (p -> sqrt p at 11 knots)."""
    xs = tuple(float(v) for v in np.linspace(0.0, 1.0, 11))
    ys = tuple(float(np.sqrt(v)) for v in xs)
    return Calibration(tuple(edges[1:]), (xs,) * (len(edges) - 1), (ys,) * (len(edges) - 1))


def test_checkpoint_round_trips_the_calibration_and_inference_applies_it(tmp_path):
    import datetime as dt

    import torch

    from pqpf.io.checkpoint import load_checkpoint, save_checkpoint
    from pqpf.predict import load_resunet, predict_probabilities

    edges = _random_checkpoint().model.bin_edges_mm
    cal = _a_calibration(edges)
    save_checkpoint(tmp_path / "best.pt", _random_checkpoint(cal))
    loaded = load_resunet(load_checkpoint(tmp_path / "best.pt"), tmp_path / "best.pt", torch.device("cpu"))
    assert loaded.calibration == cal
    rng = np.random.default_rng(1)
    graf = (rng.gamma(0.3, 2.0, (40, 40)) * (rng.random((40, 40)) < 0.4)).astype(np.float32)
    terrain = {k: np.zeros((40, 40), np.float32) for k in ("height_local_difference", "slope_x", "slope_y")}
    args = (graf, terrain, dt.datetime(2025, 7, 7), 32, 16, 4, "cpu")
    raw, thresholds = predict_probabilities(loaded, *args, calibrate=False)
    out, _ = predict_probabilities(loaded, *args)
    mapped = np.interp(raw.astype(np.float64), cal.knots_x[0], cal.knots_y[0])  # the same map everywhere
    expected = np.minimum.accumulate(mapped, axis=0)
    assert np.allclose(out, expected, atol=1e-5)
    assert np.all(np.diff(out, axis=0) <= 0)
    assert not np.allclose(out, raw, atol=1e-3)
    # An older checkpoint without a calibration is applied as it is.
    save_checkpoint(tmp_path / "old.pt", _random_checkpoint())
    old = load_resunet(load_checkpoint(tmp_path / "old.pt"), tmp_path / "old.pt", torch.device("cpu"))
    assert old.calibration is None
    assert np.array_equal(predict_probabilities(old, *args)[0], raw)


def test_light_blocks_are_pooled_with_a_neighbour_and_stay_monotone():
    x = np.linspace(0.05, 0.95, 10)
    y = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    w = np.array([100, 1, 100, 100, 100, 100, 100, 100, 100, 1.0])
    kx, ky = isotonic_knots(x, y, w, min_block_weight=0.005 * w.sum())  # 0.005 * 802 = 4 > 1
    assert len(kx) < 20 and all(a <= b for a, b in zip(ky, ky[1:]))
    assert 0.1 not in ky and 0.9 not in ky  # the light blocks were pooled
    assert isotonic_knots(x, y, w) == (list(x), list(y))  # no pooling without a minimum


def test_a_map_digest_names_the_map():
    """Equal maps share a digest; a change in one knot or one threshold gives another; a
    round trip through the checkpoint record keeps it."""
    edges = (0.0, 0.25, 1.0)
    a = _a_calibration(edges)
    b = Calibration(a.thresholds_mm, a.knots_x, (a.knots_y[0], a.knots_y[1][:-1] + (0.99,)))
    c = Calibration((0.25, 2.0), a.knots_x, a.knots_y)
    assert a.digest() == _a_calibration(edges).digest() == Calibration.from_dict(a.to_dict()).digest()
    assert len({a.digest(), b.digest(), c.digest()}) == 3 and len(a.digest()) == 16
