"""Rain objects (pqpf.verify.objects): sizes of connected areas, against hand-counted truth
and an independent flood fill."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pqpf.verify.objects import N_SIZE_CLASSES, ObjectSizes, object_sizes


def _flood_fill_sizes(wet: np.ndarray) -> list[int]:
    """Object sizes by breadth-first search over edge neighbours (written independently of scipy)."""
    seen = np.zeros_like(wet, dtype=bool)
    sizes = []
    ny, nx = wet.shape
    for j0 in range(ny):
        for i0 in range(nx):
            if not wet[j0, i0] or seen[j0, i0]:
                continue
            seen[j0, i0] = True
            queue, n = deque([(j0, i0)]), 0
            while queue:
                j, i = queue.popleft()
                n += 1
                for dj, di in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    jj, ii = j + dj, i + di
                    if 0 <= jj < ny and 0 <= ii < nx and wet[jj, ii] and not seen[jj, ii]:
                        seen[jj, ii] = True
                        queue.append((jj, ii))
            sizes.append(n)
    return sizes


def test_object_sizes_by_hand() -> None:
    wet = np.zeros((10, 12), bool)
    wet[1:4, 1:4] = True            # 9
    wet[6:8, 2:7] = True            # 10
    wet[4, 4] = True                # touches the first square's corner only: its own object
    wet[0, 11] = wet[1, 11] = True  # 2, along the edge
    assert sorted(object_sizes(wet).tolist()) == [1, 2, 9, 10]
    assert object_sizes(np.zeros((3, 3), bool)).size == 0
    with pytest.raises(ValueError, match="2-D"):
        object_sizes(np.zeros((2, 3, 3), bool))


def test_object_sizes_match_an_independent_flood_fill() -> None:
    rng = np.random.default_rng(4)
    for fraction in (0.2, 0.45, 0.6):  # below, near and above the site-percolation threshold (0.593)
        wet = rng.random((40, 57)) < fraction
        assert sorted(object_sizes(wet).tolist()) == sorted(_flood_fill_sizes(wet))


def _obs_and_members() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.zeros((30, 40))
    obs[2:6, 2:6] = 12.0                      # a 16-point core at 12 mm
    for j, i in ((20, 3), (20, 30), (25, 10), (10, 35)):
        obs[j, i] = 10.0                      # four specks exactly at 10 mm: they reach it
    members = np.zeros((2, 30, 40))
    members[0, 10:20, 10:20] = 30.0           # one 10 x 10 plateau
    members[1, 10:20, 10:20] = 30.0
    members[1, 14, 10:20] = 0.5               # a dry row cuts member 2's plateau in two: 40 + 50
    valid = np.ones((30, 40), bool)
    return obs, members, valid


def test_statistics_by_hand() -> None:
    obs, members, valid = _obs_and_members()
    acc = ObjectSizes(("mrms", "members"), (10.0, 25.0))
    acc.update({"mrms": obs, "members": members}, valid)
    res = acc.result(dx_km=4.0)
    mrms10 = res["sources"]["mrms"]["per_threshold"][0]
    assert mrms10["n_fields"] == 1 and mrms10["n_objects"] == 5
    assert mrms10["mean_size_px"] == pytest.approx(20 / 5)
    assert mrms10["point_weighted_size_px"] == pytest.approx((16 ** 2 + 4) / 20)  # 13.0
    assert mrms10["mean_largest_px"] == 16 and mrms10["max_largest_px"] == 16
    assert mrms10["area_fraction"] == pytest.approx(20 / 1200)
    share = mrms10["area_share_at_least_px"]
    assert len(share) == N_SIZE_CLASSES
    assert share[0] == pytest.approx(1.0)                      # every point is in an object of >= 1
    assert share[1:5] == pytest.approx([16 / 20] * 4)          # the core is in the 16-31 class
    assert share[5:] == pytest.approx([0.0] * (N_SIZE_CLASSES - 5))
    assert res["sources"]["mrms"]["per_threshold"][1]["n_objects"] == 0  # nothing reaches 25 mm
    assert np.isnan(res["sources"]["mrms"]["per_threshold"][1]["point_weighted_size_px"])
    mem25 = res["sources"]["members"]["per_threshold"][1]
    assert mem25["n_fields"] == 2 and mem25["n_objects"] == 3
    assert mem25["point_weighted_size_px"] == pytest.approx((100 ** 2 + 40 ** 2 + 50 ** 2) / 190)
    assert mem25["mean_largest_px"] == pytest.approx((100 + 50) / 2) and mem25["max_largest_px"] == 100
    ratio = ObjectSizes.size_ratio("members", "mrms", 10.0)(acc.named_sums())
    assert float(ratio) == pytest.approx(((100 ** 2 + 40 ** 2 + 50 ** 2) / 190) / 13.0)
    assert res["connectivity"] == 4 and res["dx_km"] == 4.0


def test_invalid_points_cut_objects_for_every_source() -> None:
    obs, members, valid = _obs_and_members()
    valid[:, 15] = False                     # a missing column through the plateaus
    obs[:, 15] = np.nan
    acc = ObjectSizes(("mrms", "members"), (25.0,))
    acc.update({"mrms": obs, "members": members}, valid)
    row = acc.result()["sources"]["members"]["per_threshold"][0]
    # member 1: 10 x 5 and 10 x 4; member 2: each half cut again by its dry row (4 more)
    assert sorted([row["n_objects"], row["max_largest_px"]]) == [6, 50]
    assert row["area_fraction"] == pytest.approx((90 + 81) / (2 * 30 * 39))


def test_sums_stream_and_bootstrap_ratio_takes_arrays() -> None:
    obs, members, valid = _obs_and_members()
    one, two = ObjectSizes(("mrms", "members"), (10.0,)), ObjectSizes(("mrms", "members"), (10.0,))
    one.update({"mrms": obs, "members": members}, valid)
    two.update({"mrms": obs, "members": members[:1]}, valid)
    two.update({"mrms": np.zeros_like(obs), "members": members[1:]}, valid)
    sums_one, sums_two = one.named_sums(), two.named_sums()
    assert sums_two["objects_s1_members@10mm"] == sums_one["objects_s1_members@10mm"]
    assert sums_two["objects_s2_members@10mm"] == sums_one["objects_s2_members@10mm"]
    replicated = {k: np.array([v, 2 * v]) for k, v in sums_one.items()}
    ratio = ObjectSizes.size_ratio("members", "mrms", 10.0)(replicated)
    assert ratio.shape == (2,) and ratio[0] == pytest.approx(ratio[1])
    empty = {k: np.zeros(3) for k in sums_one}
    assert np.isnan(ObjectSizes.size_ratio("members", "mrms", 10.0)(empty)).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ObjectSizes(("mrms", "mrms"), (1.0,))
    with pytest.raises(ValueError, match="positive"):
        ObjectSizes(("mrms",), (0.0,))
    acc = ObjectSizes(("mrms",), (1.0,))
    with pytest.raises(ValueError, match="mrms: shape"):
        acc.update({"mrms": np.zeros((4, 5))}, np.ones((5, 4), bool))


def test_the_last_size_class_is_open(monkeypatch):
    import pqpf.verify.objects as objects

    monkeypatch.setattr(objects, "N_SIZE_CLASSES", 3)  # classes 1, 2-3, >= 4
    field = np.zeros((20, 20))
    field[0, :17] = 2.0       # 17: the open class
    field[2, :3] = 2.0        # 3
    field[4, 0] = 2.0         # 1
    field[6:8, :3] = 2.0      # 6: the open class
    acc = objects.ObjectSizes(("mrms",), (1.0,))
    acc.update({"mrms": field}, np.ones(field.shape, bool))
    np.testing.assert_array_equal(acc.area_by_class[0, 0], [1, 3, 23])
    row = acc.result()["sources"]["mrms"]["per_threshold"][0]
    assert row["area_share_at_least_px"] == pytest.approx([1.0, 26 / 27, 23 / 27])
    assert row["max_largest_px"] == 17
