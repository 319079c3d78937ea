"""File formats: GRIB2 (reading, and writing for synthetic archives), netCDF, patch files.

Only this sub-package and :mod:`pqpf.cli` touch the disk.
"""
