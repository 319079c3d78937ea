#!/usr/bin/env python3
"""Fetch one GRAF forecast (INIT, LEAD) from the HPC archive into the laptop layout.

Reads host, user, remote directory and ssh options from the [remote] section of the
site configuration and copies with rsync over ssh (scp if rsync is missing), never
accepting an unknown host key. Writes {graf_laptop_dir}/{archive}/{YYYYMMDD}/{HH}/{file}.
"""
import sys
from pathlib import Path

from pqpf.cli.copy_graf_to_laptop import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
