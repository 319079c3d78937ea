#!/usr/bin/env python3
"""Cut training patches (GRAF, MRMS, quality, terrain features) for one INIT and LEAD.

    python save_patched_graf_mrms.py 2025120100 12 [--config FILE] [--overwrite]
"""
import sys
from pathlib import Path

from pqpf.cli.save_patched_graf_mrms import main

if __name__ == "__main__":
    sys.exit(main(script_dir=Path(__file__).resolve().parent))
