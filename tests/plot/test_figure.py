"""Figure plumbing: fields land on their grid points whichever way a grid runs; atomic PNGs."""

import numpy as np
import pytest
from matplotlib.colors import ListedColormap

from pqpf.grid import Grid
from pqpf.plot.figure import check_field, grid_extent, map_axes, new_figure, save_png, show_field

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


@pytest.mark.parametrize("dx, dy", [(0.5, 0.5), (0.5, -0.5), (-0.5, 0.5), (-0.5, -0.5)])
def test_show_field_puts_each_value_in_its_grid_cell_for_any_axis_direction(dx, dy, pixel_of):
    grid = Grid("latitude_longitude", 6, 8, x0=-105.0, y0=40.0, dx=dx, dy=dy)
    field = np.zeros(grid.shape)
    field[1, 5] = 1.0  # one red cell on blue
    fig = new_figure(4.0, 3.0)
    ax = fig.add_subplot()
    show_field(ax, grid, field, ListedColormap([BLUE, RED]), None)
    map_axes(ax, grid, "")
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    # north up, east right: the largest y is the top row, the largest x the right column
    rows, cols = pixel_of(ax, [grid.x.min(), grid.x.max()], [grid.y.min(), grid.y.max()], img.shape[0])
    assert rows[1] < rows[0] and cols[1] > cols[0]
    for j in range(grid.ny):
        for i in range(grid.nx):
            r, c = pixel_of(ax, grid.x[i], grid.y[j], img.shape[0])
            expected = RED if (j, i) == (1, 5) else BLUE
            np.testing.assert_array_equal(img[r[0], c[0]], np.array(expected) * 255, err_msg=f"{(j, i)}")


def test_grid_extent_is_the_outer_cell_edges():
    grid = Grid("latitude_longitude", 6, 8, x0=-105.0, y0=40.0, dx=0.5, dy=-0.5)
    assert grid_extent(grid) == (-105.25, -101.25, 37.25, 40.25)


def test_check_field_names_the_field_and_both_shapes():
    grid = Grid("latitude_longitude", 6, 8, x0=-105.0, y0=40.0, dx=0.5, dy=0.5)
    with pytest.raises(ValueError, match=r"quality must have the grid's shape \(6, 8\), got \(8, 6\)"):
        check_field("quality", np.zeros((8, 6)), grid)
    assert check_field("quality", np.zeros((6, 8), np.float32), grid).dtype == np.float64


def test_save_png_writes_atomically_at_120_dpi_and_releases_the_figure(tmp_path):
    from matplotlib.image import imread

    fig = new_figure(2.0, 1.5)
    fig.add_subplot().plot([0, 1], [0, 1])
    out = save_png(fig, tmp_path / "f.png")
    assert out == tmp_path / "f.png" and imread(out).shape[:2] == (180, 240)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
    assert fig.axes == []
