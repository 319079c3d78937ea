"""``python -m pqpf.synthetic``: write a synthetic GRAF + MRMS archive."""

import sys

from pqpf.synthetic.cli import main

__all__: list[str] = []

sys.exit(main())
