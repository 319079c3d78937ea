#!/usr/bin/env python3
"""Remap hourly MRMS 1-h QPE and radar quality (gzipped GRIB2 in the raw archive) to the
GRAF grid of the terrain file and write one CF netCDF per hour (precipitation, quality,
valid_fraction), for every hour from BEGIN to END: ``save_remapped_mrms.py BEGIN END``."""
import sys
from pathlib import Path

from pqpf.cli.save_remapped_mrms import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
