"""Regular grids: Lambert conformal model grids and regular latitude/longitude grids.

A :class:`Grid` describes where every element of a ``(ny, nx)`` array lies. Element
``[j, i]`` sits at projection coordinates ``(x0 + i*dx, y0 + j*dy)``: metres for Lambert
grids, degrees (x = longitude, y = latitude) for latitude/longitude grids. Rows may run
south to north (``dy > 0``, as GRIB Lambert fields scan) or north to south (``dy < 0``,
as MRMS does); arrays are never reordered on reading.

Coordinates are derived from the grid definition, never stored per point, so the
3500 x 7000 MRMS grid costs nothing until a block of its coordinates is asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Grid", "LAMBERT", "LATLON", "EARTH_RADIUS_M", "graf_like_grid"]

LAMBERT = "lambert_conformal_conic"
LATLON = "latitude_longitude"
#: Radius of the spherical earth GRIB2 shape 6 specifies, metres.
EARTH_RADIUS_M = 6371229.0


def _wrap_lon(lon: NDArray[np.float64] | float) -> NDArray[np.float64] | float:
    """Longitude into [-180, 180)."""
    return (np.asarray(lon) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class Grid:
    """A regular grid in a Lambert conformal or a latitude/longitude coordinate system.

    Parameters
    ----------
    projection : str
        ``"lambert_conformal_conic"`` or ``"latitude_longitude"``.
    ny, nx : int
        Number of rows and columns.
    x0, y0 : float
        Coordinates of element ``[0, 0]`` (m, or degrees east/north for lat/lon).
    dx, dy : float
        Spacing between columns and rows; negative when the coordinate decreases.
    lat_1, lat_2, lat_0, lon_0 : float
        Lambert standard parallels, latitude of origin and central meridian (degrees).
    earth_a, earth_b : float
        Semi-major and semi-minor axes of the earth model (m); equal for a sphere.
    """

    projection: str
    ny: int
    nx: int
    x0: float
    y0: float
    dx: float
    dy: float
    lat_1: float = 0.0
    lat_2: float = 0.0
    lat_0: float = 0.0
    lon_0: float = 0.0
    earth_a: float = EARTH_RADIUS_M
    earth_b: float = EARTH_RADIUS_M

    def __post_init__(self) -> None:
        if self.projection not in (LAMBERT, LATLON):
            raise ValueError(f"projection must be {LAMBERT!r} or {LATLON!r}, got {self.projection!r}")
        if self.ny < 1 or self.nx < 1:
            raise ValueError(f"grid must have at least one point, got shape ({self.ny}, {self.nx})")
        if self.dx == 0 or self.dy == 0:
            raise ValueError(f"grid spacing must be non-zero, got dx={self.dx}, dy={self.dy}")

    # ---- basic properties -------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return (self.ny, self.nx)

    @property
    def is_lambert(self) -> bool:
        return self.projection == LAMBERT

    @property
    def is_sphere(self) -> bool:
        return self.earth_a == self.earth_b

    @property
    def x(self) -> NDArray[np.float64]:
        """Column coordinates, shape (nx,)."""
        return self.x0 + self.dx * np.arange(self.nx, dtype=np.float64)

    @property
    def y(self) -> NDArray[np.float64]:
        """Row coordinates, shape (ny,)."""
        return self.y0 + self.dy * np.arange(self.ny, dtype=np.float64)

    def proj4(self) -> str:
        """PROJ string of the coordinate system."""
        earth = f"+a={self.earth_a!r} +b={self.earth_b!r}"
        if self.is_lambert:
            return (
                f"+proj=lcc +lat_1={self.lat_1!r} +lat_2={self.lat_2!r} +lat_0={self.lat_0!r} "
                f"+lon_0={self.lon_0!r} +x_0=0 +y_0=0 {earth} +units=m +no_defs"
            )
        return f"+proj=longlat {earth} +no_defs"

    def _proj(self) -> Any:
        import pyproj

        return pyproj.Proj(self.proj4())

    # ---- coordinate conversions -------------------------------------------------------

    def to_xy(
        self, lon: NDArray[np.float64], lat: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Longitude/latitude (degrees) -> grid coordinates ``(x, y)``.

        Latitude/longitude are taken on this grid's own earth model (no datum shift),
        which is how GRIB grids are meant to be read.
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if self.is_lambert:
            x, y = self._proj()(lon, lat)
            return np.asarray(x), np.asarray(y)
        # x on the grid's own longitude branch: from half a cell before x0 onwards in the
        # direction of dx, so the first column owns the points just west of its centre.
        half = 0.5 * abs(self.dx)
        if self.dx > 0:
            x = self.x0 + np.mod(lon - self.x0 + half, 360.0) - half
        else:
            x = self.x0 - np.mod(self.x0 - lon + half, 360.0) + half
        return x, lat.copy()

    def to_lonlat(
        self, x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Grid coordinates -> longitude in [-180, 180) and latitude (degrees)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.is_lambert:
            lon, lat = self._proj()(x, y, inverse=True)
            return np.asarray(_wrap_lon(lon)), np.asarray(lat)
        return np.asarray(_wrap_lon(x)), y.copy()

    def fractional_index(
        self, lon: NDArray[np.float64], lat: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Fractional ``(j, i)`` array indices of longitude/latitude points.

        Integer values are element centres; a point lies inside element ``[j, i]`` when
        ``round(j) == j_int`` and ``round(i) == i_int``.
        """
        x, y = self.to_xy(lon, lat)
        return (y - self.y0) / self.dy, (x - self.x0) / self.dx

    def lonlat(
        self, rows: slice | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Longitude and latitude of every element (or of a block of rows), 2-D float64.

        For large lat/lon grids ask for blocks of rows: a full 3500 x 7000 field of
        coordinates is 400 MB.
        """
        rows = rows if rows is not None else slice(0, self.ny)
        yy = self.y[rows]
        xx, yy2 = np.meshgrid(self.x, yy)
        return self.to_lonlat(xx, yy2)

    # ---- geometry ------------------------------------------------------------------------

    def cone_constant(self) -> float:
        """Lambert cone constant ``n`` (sphere formula)."""
        p1, p2 = math.radians(self.lat_1), math.radians(self.lat_2)
        if abs(p1 - p2) < 1e-10:
            return math.sin(p1)
        return math.log(math.cos(p1) / math.cos(p2)) / math.log(
            math.tan(math.pi / 4 + p2 / 2) / math.tan(math.pi / 4 + p1 / 2)
        )

    def ground_metrics(
        self, rows: slice | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Ground distance of one grid step and the convergence angle at each element.

        Returns
        -------
        dx_ground_m, dy_ground_m : float64 arrays, shape (ny, nx) or the block asked for
            Distance on the earth's surface (m) of a step of ``dx`` along the columns and
            ``dy`` along the rows, signed like ``dx`` and ``dy``. For a Lambert grid this
            is the grid spacing divided by the map factor.
        convergence_rad : float64 array
            Angle (radians) by which true north is rotated counter-clockwise from the
            grid's +y axis. The unit vectors of true east and north in grid-axis
            components are ``(cos g, sin g)`` and ``(-sin g, cos g)``.

        Notes
        -----
        A latitude/longitude grid has no convergence; its steps are ``N cos(phi) dlon``
        and ``M dlat`` with the radii of curvature ``N = a / W`` and
        ``M = a (1 - e^2) / W^3``, ``W = sqrt(1 - e^2 sin^2 phi)`` (``R cos(phi) dlon``
        and ``R dlat`` on a sphere).
        Lambert on a sphere uses the closed forms (Snyder 1987, eqs. 15-1 to 15-4):
        ``k = n F / (cos(phi) tan^n(pi/4 + phi/2))`` and ``gamma = n (lambda - lambda_0)``.
        On an ellipsoid both are measured from the projection by a finite difference.

        References
        ----------
        Snyder, J. P. (1987). Map projections: a working manual. USGS Professional
        Paper 1395, 104-110.
        """
        lon, lat = self.lonlat(rows)
        if not self.is_lambert:
            # Radii of curvature in the prime vertical (N) and the meridian (M); both
            # equal the radius on a sphere.
            a, e2 = self.earth_a, 1.0 - (self.earth_b / self.earth_a) ** 2
            phi = np.radians(lat)
            w2 = 1.0 - e2 * np.sin(phi) ** 2
            dxg = a / np.sqrt(w2) * np.cos(phi) * math.radians(self.dx)
            dyg = a * (1.0 - e2) / w2**1.5 * math.radians(self.dy)
            return dxg, dyg, np.zeros_like(dxg)
        if self.is_sphere:
            n = self.cone_constant()
            p1 = math.radians(self.lat_1)
            f = math.cos(p1) * math.tan(math.pi / 4 + p1 / 2) ** n / n
            phi = np.radians(lat)
            k = n * f / (np.cos(phi) * np.tan(np.pi / 4 + phi / 2) ** n)
            gamma = n * np.radians(_wrap_lon(lon - self.lon_0))
        else:
            import pyproj

            geod = pyproj.Geod(a=self.earth_a, b=self.earth_b)
            step = 1e-4
            x1, y1 = self.to_xy(lon, lat - step)
            x2, y2 = self.to_xy(lon, lat + step)
            _, _, dist = geod.inv(lon, lat - step, lon, lat + step)
            k = np.hypot(x2 - x1, y2 - y1) / np.asarray(dist)
            gamma = np.arctan2(-(x2 - x1), y2 - y1)
        return self.dx / k, self.dy / k, gamma

    # ---- identity, CF ----------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A short hash of the definition; equal grids have equal fingerprints."""
        canon = {k: (round(v, 9) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        blob = json.dumps(canon, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def same_as(self, other: Grid, rtol: float = 1e-9) -> bool:
        """Equal up to rounding of the floating-point parameters."""
        if (self.projection, self.ny, self.nx) != (other.projection, other.ny, other.nx):
            return False
        for name in ("x0", "y0", "dx", "dy", "lat_1", "lat_2", "lat_0", "lon_0", "earth_a", "earth_b"):
            a, b = getattr(self, name), getattr(other, name)
            if not math.isclose(a, b, rel_tol=rtol, abs_tol=1e-6):
                return False
        return True

    def subgrid(self, j0: int, j1: int, i0: int, i1: int) -> Grid:
        """The grid of ``array[j0:j1, i0:i1]``."""
        if not (0 <= j0 < j1 <= self.ny and 0 <= i0 < i1 <= self.nx):
            raise ValueError(f"subgrid [{j0}:{j1}, {i0}:{i1}] outside grid of shape {self.shape}")
        return Grid(
            **{
                **asdict(self),
                "ny": j1 - j0,
                "nx": i1 - i0,
                "x0": self.x0 + i0 * self.dx,
                "y0": self.y0 + j0 * self.dy,
            }
        )

    def describe(self) -> str:
        """One line for logs and error messages."""
        if self.is_lambert:
            return (
                f"Lambert {self.ny}x{self.nx} dx={self.dx:g} m lat_1={self.lat_1:g} "
                f"lat_2={self.lat_2:g} lon_0={self.lon_0:g}"
            )
        lat = f"{abs(self.y0):g}{'N' if self.y0 >= 0 else 'S'}"
        lon = f"{abs(self.x0):g}{'E' if self.x0 >= 0 else 'W'}"
        return f"lat/lon {self.ny}x{self.nx}, {abs(self.dy):g} x {abs(self.dx):g} deg, first point {lat} {lon}"

    def cf_grid_mapping(self) -> tuple[str, dict[str, Any]]:
        """Name and attributes of the CF grid-mapping variable for this grid."""
        import pyproj

        attrs: dict[str, Any] = {}
        if self.is_lambert:
            name = "lambert_conformal_conic"
            attrs["grid_mapping_name"] = "lambert_conformal_conic"
            attrs["standard_parallel"] = (
                [self.lat_1] if self.lat_1 == self.lat_2 else [self.lat_1, self.lat_2]
            )
            attrs["longitude_of_central_meridian"] = self.lon_0
            attrs["latitude_of_projection_origin"] = self.lat_0
            attrs["false_easting"] = 0.0
            attrs["false_northing"] = 0.0
        else:
            name = "latitude_longitude"
            attrs["grid_mapping_name"] = "latitude_longitude"
        if self.is_sphere:
            attrs["earth_radius"] = self.earth_a
        else:
            attrs["semi_major_axis"] = self.earth_a
            attrs["semi_minor_axis"] = self.earth_b
        attrs["crs_wkt"] = pyproj.CRS.from_proj4(self.proj4()).to_wkt()
        attrs["proj4"] = self.proj4()
        return name, attrs

    @classmethod
    def from_cf(
        cls, attrs: dict[str, Any], x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> Grid:
        """Rebuild a grid from CF grid-mapping attributes and its 1-D x/y coordinates."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.size < 2 or y.size < 2:
            raise ValueError("need at least two x and two y coordinates to rebuild a grid")
        if "earth_radius" in attrs:
            a = b = float(attrs["earth_radius"])
        else:
            a, b = float(attrs["semi_major_axis"]), float(attrs["semi_minor_axis"])
        common: dict[str, Any] = dict(
            ny=y.size, nx=x.size, x0=float(x[0]), y0=float(y[0]),
            dx=float((x[-1] - x[0]) / (x.size - 1)), dy=float((y[-1] - y[0]) / (y.size - 1)),
            earth_a=a, earth_b=b,
        )
        mapping = attrs.get("grid_mapping_name")
        if mapping == "lambert_conformal_conic":
            sp = np.atleast_1d(attrs["standard_parallel"]).astype(float)
            return cls(
                projection=LAMBERT,
                lat_1=float(sp[0]), lat_2=float(sp[-1]),
                lat_0=float(attrs["latitude_of_projection_origin"]),
                lon_0=float(attrs["longitude_of_central_meridian"]),
                **common,
            )
        if mapping == "latitude_longitude":
            return cls(projection=LATLON, **common)
        raise ValueError(f"unsupported grid_mapping_name {mapping!r}")


def graf_like_grid(name: str) -> Grid:
    """A GRAF-like Lambert conformal grid by name, for synthetic archives and benchmarks.

    ``"conus"``: the full GRAF CONUS size, 1308 rows x 1524 columns at 4 km, centred at
    38.5N 97.5W (standard parallel 38.5N, like HRRR). ``"demo"``: 200 x 250 points at
    4 km over Colorado and its neighbours (centre 39.5N 105W), small enough for the
    whole pipeline to run in minutes on two CPU cores.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    specs = {
        "conus": (1308, 1524, 4000.0, 38.5, -97.5),
        "demo": (200, 250, 4000.0, 39.5, -105.0),
    }
    if name not in specs:
        raise ValueError(f"unknown grid {name!r}; valid names: {', '.join(sorted(specs))}")
    ny, nx, d, lat_c, lon_c = specs[name]
    proto = Grid(LAMBERT, ny, nx, 0.0, 0.0, d, d, 38.5, 38.5, 38.5, -97.5)
    xc, yc = proto.to_xy(np.array(lon_c), np.array(lat_c))
    x0 = round(float(xc) - d * (nx - 1) / 2.0)
    y0 = round(float(yc) - d * (ny - 1) / 2.0)
    # GRIB2 stores the first grid point in micro-degrees and readers rebuild x0, y0 from
    # it; snapping it to that resolution (a few cm) lets the grid survive a GRIB round
    # trip unchanged. Longitude in 0..360 and the x0=0 prototype, as the reader does.
    lon0, lat0 = proto.to_lonlat(np.array(float(x0)), np.array(float(y0)))
    lon0_360 = round((float(lon0) % 360.0) * 1e6) / 1e6
    lat0_snap = round(float(lat0) * 1e6) / 1e6
    xs, ys = proto.to_xy(np.array(lon0_360), np.array(lat0_snap))
    return Grid(LAMBERT, ny, nx, float(xs), float(ys), d, d, 38.5, 38.5, 38.5, -97.5)
