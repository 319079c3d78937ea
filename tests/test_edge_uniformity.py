"""A dry, flat domain gives uniform probabilities up to its edges (issue 10 item 2).

Every feature is then constant, so any pattern comes from the windows: with zero-padded
3x3 convolutions each window's output has a rim (the network sees an artificial zero
border), and blending windows placed every ``stride`` points turns those rims into bands
with the stride's period, including near the domain edges. Replicate-padded convolutions
keep a constant field constant in every window, whatever the weights.
"""

import dataclasses
import datetime as dt

import numpy as np
import pytest
import torch

from pqpf.features import FEATURE_SCHEMA_VERSION, PAD_MODES, channel_names
from pqpf.hparams import hparams_to_dict, load_hparams
from pqpf.io.checkpoint import ModelRecord
from pqpf.model.resunet import build_resunet
from pqpf.normalisation import Normalisation
from pqpf.predict import LoadedModel, predict_probabilities

NY, NX = 90, 150


def _model(padding: str, seed: int, norm: str = "batch") -> LoadedModel:
    torch.manual_seed(seed)
    hp = load_hparams("tiny")
    hp = dataclasses.replace(hp, model=dataclasses.replace(hp.model, padding=padding, norm=norm))
    names = channel_names(False)
    net = build_resunet(hp.model, len(names))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
        # Batch norms get the statistics of their own activations, as training leaves them.
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a cumulative average
        net.train()(torch.randn(8, len(names), 32, 32))
    net.eval()
    norm = Normalisation(names, (0.3, 0.1, 0.05, 0.0, 0.0), (1.0,) * len(names))
    record = ModelRecord("resunet", hparams_to_dict(hp), "2025070700", 1, names, FEATURE_SCHEMA_VERSION,
                         norm.to_dict(), hp.model.bin_edges_mm, (0.25, 1.0), 32)
    return LoadedModel(net, norm, record, None)  # type: ignore[arg-type]


def _dry_flat(model: LoadedModel, pad_mode: str, wet_square: bool = False) -> np.ndarray:
    terrain = {k: np.zeros((NY, NX), np.float32) for k in ("height_local_difference", "slope_x", "slope_y")}
    graf = np.zeros((NY, NX), np.float32)
    if wet_square:
        graf[40:50, 70:80] = 5.0
    prob, _ = predict_probabilities(model, graf, terrain, dt.datetime(2025, 7, 7, 12), 32, 16, 8, "cpu", pad_mode)
    return prob


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_dry_flat_domain_gives_uniform_probabilities_up_to_the_edges(pad_mode, seed, norm):
    model = _model("replicate", seed, norm)
    prob = _dry_flat(model, pad_mode)
    spread = prob.max(axis=(1, 2)) - prob.min(axis=(1, 2))
    assert spread.max() < 1e-3
    # ... and the model does depend on its input (a wet square changes the probabilities;
    # for group norm a uniform field of another value would not: it removes a constant level).
    assert np.abs(_dry_flat(model, pad_mode, wet_square=True) - prob).max() > 1e-2


@pytest.mark.parametrize("pad_mode", ["reflect", "none"])
def test_zero_padded_convolutions_make_bands_on_a_dry_flat_domain(pad_mode):
    # The documented cause: the same random network with zero padding is not uniform.
    prob = _dry_flat(_model("zeros", 0, "group"), pad_mode)
    assert (prob.max(axis=(1, 2)) - prob.min(axis=(1, 2))).max() > 1e-3


NY2, NX2 = 300, 420


def _wet_field(seed: int, shape: tuple[int, int] = (NY2, NX2)) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    graf = np.maximum(gaussian_filter(rng.gamma(0.3, 8.0, shape), 3) - 0.5, 0).astype(np.float32)
    terrain = {k: gaussian_filter(rng.normal(0, 1, shape), 5).astype(np.float32)
               for k in ("height_local_difference", "slope_x", "slope_y")}
    return graf, terrain



@pytest.mark.parametrize("shape", [(NY2, NX2), (100, 700)])
def test_batch_norm_network_on_its_default_large_windows_matches_one_whole_field_pass(shape):
    """A batch-norm U-Net is window-independent: on its default 256-px windows the stitched
    field is one forward pass over the whole field to a few 1e-6, closer than with the
    64/32 windows a group-norm network needs (more window rims), while a group-norm
    network's own default is 1e-2 away from its whole-field pass (the window's statistics)."""
    import torch

    from pqpf.ordinal import exceedance_matrix
    from pqpf.predict import predict_reduced

    graf, terrain = _wet_field(1, shape)  # (100, 700): windows capped at the narrow side
    when = dt.datetime(2025, 7, 7, 12)
    rms = {}
    for norm in ("batch", "group"):
        model = _model("replicate", 0, norm)
        red = exceedance_matrix(model.bin_edges_mm, (0.25, 1.0))

        def run(window, stride, model=model, red=red):
            return predict_reduced(model, graf, terrain, when, red, window, stride, 0, "cpu", "none")

        _, x = run(0, 0)
        with torch.no_grad():
            bins = torch.softmax(model.net(torch.from_numpy(x)[None]), dim=1)[0].numpy()
        whole = np.einsum("rk,kyx->ryx", red, bins)
        assert whole.std() > 0.02  # a field with structure
        for setting in ((0, 0), (64, 32), (100, 100)):
            rms[norm, setting] = float(np.sqrt(np.mean((run(*setting)[0] - whole) ** 2)))
    assert _model("replicate", 0, "batch").window(0, 0) == (256, 240)  # the record's patch is 32 px
    if shape[0] >= 256:
        assert rms["batch", (0, 0)] < 2e-5
        assert rms["batch", (0, 0)] < 0.5 * rms["batch", (64, 32)]
    else:
        # a narrow domain caps the window at its short side (100 px); the default stride
        # then still overlaps the windows, which windows laid edge to edge would not
        assert _model("replicate", 0, "batch").stitching(0, 0, shape, "none")[:2] == (100, 84)
        assert rms["batch", (0, 0)] < min(0.5 * rms["batch", (100, 100)], rms["batch", (64, 32)])
    assert rms["group", (0, 0)] > 100 * rms["batch", (0, 0)]


def _real_hrrr_dry_points(real_data, radius_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real HRRR 11-12 h field (1059 x 1799, 3 km), points with no rain within
    ``radius_px``, and each point's distance to the domain edge."""
    from scipy.ndimage import maximum_filter

    from pqpf.io.grib import read_graf

    from .conftest import HRRR_FULL

    graf = np.nan_to_num(read_graf(real_data(HRRR_FULL), 12).values).astype(np.float32)
    dry = maximum_filter(graf, size=2 * radius_px + 1, mode="nearest") == 0
    rows, cols = np.indices(graf.shape)
    edge = np.minimum.reduce([rows, cols, graf.shape[0] - 1 - rows, graf.shape[1] - 1 - cols])
    return graf, dry, edge


@pytest.mark.slow
def test_real_hrrr_field_leaves_no_edge_bands_in_its_dry_areas(real_data):
    """Issue 10's stripes were seen on a real archive. On a real 3-km NWP field (HRRR,
    the closest public stand-in for GRAF) over its full grid, flat terrain, on the default
    256-px windows: every dry point farther from rain than the network sees has one
    probability, from the interior through the window seams to the outermost column; the
    zero-padded network makes bands there."""
    graf, dry, edge = _real_hrrr_dry_points(real_data, 40)
    terrain = {k: np.zeros(graf.shape, np.float32) for k in ("height_local_difference", "slope_x", "slope_y")}
    assert (dry & (edge < 5)).sum() > 5000 and (dry & (edge >= 100)).sum() > 100_000  # dry edges, dry interior
    when = dt.datetime(2020, 12, 14, 12)
    spread = {}
    for padding, norm in (("replicate", "batch"), ("zeros", "group")):
        prob, _ = predict_probabilities(_model(padding, 0, norm), graf, terrain, when, 0, 0, 0, "cpu", "reflect")
        p = prob[0]  # P(>= 0.25 mm)
        assert np.abs(p[graf > 1] - p[dry][0]).max() > 5e-3  # the rain is seen (1e-6 below)
        spread[padding] = float(p[dry].max() - p[dry].min())
        if padding == "replicate":
            assert abs(p[dry & (edge < 5)].mean() - p[dry & (edge >= 100)].mean()) < 1e-6
    assert spread["replicate"] < 1e-6
    assert spread["zeros"] > 1e-3
