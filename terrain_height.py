#!/usr/bin/env python3
"""Turn the GRAF terrain GRIB ([paths] graf_terrain_grib) into the terrain netCDF
([paths] terrain_file): height, smoothed height, local difference, slopes along the grid
axes and along true east/north (m/m on the ground), map factor and convergence angle."""
import sys
from pathlib import Path

from pqpf.cli.terrain_height import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
