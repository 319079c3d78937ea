"""``copy_graf_to_laptop.py INIT LEAD``: fetch one GRAF forecast from the HPC archive."""

from __future__ import annotations

import argparse
from pathlib import Path

from pqpf.cli import common

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Fetch the GRAF 1-h precipitation forecast for INIT and LEAD from the HPC archive
([remote] remote_graf_dir on [remote] host) into the laptop layout below
[paths] graf_laptop_dir, with rsync over ssh (scp when rsync is not installed).

Host keys are always checked: an unknown host is refused, never added to known_hosts.
Connect once with plain ssh and verify the fingerprint first. An existing local copy is
kept unless --overwrite. Prints the local path (or, with --dry-run, the command)."""


def build_parser(script_dir: Path | None = None) -> common.PqpfArgumentParser:
    """The command-line parser (``--help`` needs nothing else)."""
    parser = common.build_parser("copy_graf_to_laptop.py", _DESCRIPTION, script_dir)
    common.add_init_lead(parser)
    parser.add_argument("--method", choices=("auto", "rsync", "scp"), default="auto",
                        help="transfer tool (default auto: rsync if installed, else scp)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the transfer command and run nothing")
    parser.add_argument("--overwrite", action="store_true",
                        help="fetch again even if the local file exists")
    return parser


def _body(args: argparse.Namespace) -> int:
    from pqpf.stages.fetch import fetch_graf

    config = common.load_config_from_args(args)
    lead_h = common.check_lead(config, args.lead)
    result = fetch_graf(config, args.init, lead_h, method=args.method, dry_run=args.dry_run,
                        overwrite=args.overwrite)
    print(result)
    return 0


def main(argv: list[str] | None = None, script_dir: Path | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 failed transfer, 2 bad usage)."""
    return common.run_cli(build_parser(script_dir), _body, argv)
