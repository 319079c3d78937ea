"""What every pqpf command shares: ``--config``, ``-v/--quiet``, date and lead
arguments, logging set-up, and one error policy.

Error policy: a bad argument (an impossible date, a lead outside the configured range)
prints one line ``PROG: error: ...`` and exits 2; any other deliberate error
(:class:`~pqpf.errors.PqpfError`: missing/corrupt file, bad config) prints one line and
exits 1. Unexpected exceptions keep their traceback: they are bugs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from pqpf.config import Config, load_config, resolve_config_path
from pqpf.dates import format_yyyymmddhh, hour_range, parse_yyyymmddhh, validate_lead
from pqpf.errors import PqpfError, UsageError

__all__ = [
    "PqpfArgumentParser",
    "build_parser",
    "add_init_lead",
    "add_begin_end",
    "add_init_range_lead",
    "date_arg",
    "lead_arg",
    "positive_int",
    "non_negative_int",
    "non_negative_float",
    "smoothing_px",
    "setup_logging",
    "load_config_from_args",
    "check_lead",
    "checked_range_lead",
    "run_cli",
]

logger = logging.getLogger(__name__)


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class PqpfArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def date_arg(text: str) -> dt.datetime:
    """argparse type for YYYYMMDDHH."""
    try:
        return parse_yyyymmddhh(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole_number(text: str) -> int:
    """Decimal digits with an optional sign, nothing else: ``int()`` alone would also take
    ``1_2`` (as 12), surrounding blanks and other scripts' digits."""
    if not _WHOLE_NUMBER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def lead_arg(text: str) -> int:
    """argparse type for a lead time in hours (range checked against the config later)."""
    try:
        value = _whole_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"lead must be a whole number of hours, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"lead must not be negative, got {value}")
    return value


def _whole_number_at_least(text: str, minimum: int) -> int:
    try:
        value = _whole_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type for a count or size that must be at least 1."""
    return _whole_number_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type for a seed or offset that must be at least 0."""
    return _whole_number_at_least(text, 0)


def non_negative_float(text: str) -> float:
    """argparse type for a finite amount that must be at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def smoothing_px(text: str) -> float:
    """argparse type for a smoothing length in grid points: a number >= 0 or ``inf``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or inf, got {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or inf, got {text!r}")
    return value


def build_parser(
    prog: str, description: str, script_dir: Path | None = None
) -> PqpfArgumentParser:
    """A parser with the options every pqpf command takes.

    Parameters
    ----------
    prog : str
        Name shown in usage and error lines, e.g. ``"save_remapped_mrms.py"``.
    description : str
        First paragraph of ``--help``.
    script_dir : Path, optional
        Where the default ``config_laptop.ini`` lives (the top-level scripts' directory).
    """
    parser = PqpfArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default_cfg = resolve_config_path(None, script_dir)
    parser.add_argument(
        "--config", metavar="FILE", default=None,
        help=f"site configuration (INI); default $PQPF_CONFIG, else {default_cfg}",
    )
    parser.set_defaults(_script_dir=script_dir)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return parser


def add_init_lead(parser: argparse.ArgumentParser) -> None:
    """Positional ``INIT`` (YYYYMMDDHH) and ``LEAD`` (hours)."""
    parser.add_argument("init", metavar="INIT", type=date_arg, help="initialisation time, YYYYMMDDHH")
    parser.add_argument("lead", metavar="LEAD", type=lead_arg, help="lead time in hours, e.g. 12")


def add_until_every(parser: argparse.ArgumentParser, loaded: str) -> None:
    """``--until END`` and ``--every H``: many inits in one process (``loaded``: what is
    loaded once, for the help)."""
    parser.add_argument("--until", type=date_arg, default=None, metavar="END",
                        help=f"run every init from INIT to END (inclusive) in this one process: {loaded} loaded once")
    parser.add_argument("--every", type=positive_int, default=None, metavar="H",
                        help="hours between inits with --until (default 12: the 00 and 12 UTC cycles)")


def inits_from_args(args: argparse.Namespace) -> list[dt.datetime] | None:
    """The inits of ``--until``/``--every`` (:func:`add_until_every`), or None without ``--until``.

    Raises
    ------
    UsageError
        ``--every`` without ``--until``, or ``--until`` before INIT.
    """
    if args.until is None:
        if args.every is not None:
            raise UsageError("--every needs --until")
        return None
    if args.until < args.init:
        raise UsageError(f"--until {format_yyyymmddhh(args.until)} is before INIT {format_yyyymmddhh(args.init)}")
    return list(hour_range(args.init, args.until, step_h=args.every or 12))


def add_begin_end(parser: argparse.ArgumentParser, what: str = "hour") -> None:
    """Positional ``BEGIN`` and ``END`` (YYYYMMDDHH, inclusive)."""
    parser.add_argument("begin", metavar="BEGIN", type=date_arg, help=f"first {what}, YYYYMMDDHH")
    parser.add_argument("end", metavar="END", type=date_arg, help=f"last {what}, YYYYMMDDHH (inclusive)")


def add_init_range_lead(parser: argparse.ArgumentParser) -> None:
    """Positional ``BEGIN`` and ``END`` (first and last init, inclusive) and ``LEAD``: the
    range a verification or calibration covers."""
    add_begin_end(parser, "init")
    parser.add_argument("lead", metavar="LEAD", type=lead_arg, help="lead time in hours")


def checked_range_lead(args: argparse.Namespace, config: Config) -> int:
    """The ``LEAD`` of :func:`add_init_range_lead`, validated against the configuration;
    UsageError if END is before BEGIN or LEAD is outside ``[graf]``'s leads."""
    lead = check_lead(config, args.lead)
    next(hour_range(args.begin, args.end))  # END before BEGIN is a usage error
    return lead


def setup_logging(args: argparse.Namespace) -> None:
    """Configure the root logger from ``-v``/``--quiet`` (the only place pqpf does so)."""
    level = logging.DEBUG if getattr(args, "verbose", False) else (
        logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
        stream=sys.stderr, force=True,
    )
    if level > logging.DEBUG:
        for noisy in ("matplotlib", "PIL", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` of the torch stages (overrides ``[compute] threads``)."""
    parser.add_argument("--threads", type=non_negative_int, default=None, metavar="N",
                        help="torch threads (default [compute] threads; 0: the CPUs this job may use)")


def apply_threads(args: argparse.Namespace, config: Config) -> int:
    """Set torch's threads from ``--threads`` or the config; return the number set."""
    from pqpf.device import set_threads

    return set_threads(args.threads if args.threads is not None else config.compute.threads)


def load_config_from_args(args: argparse.Namespace) -> Config:
    """The configuration named by ``--config`` / ``$PQPF_CONFIG`` / the default."""
    path = resolve_config_path(args.config, getattr(args, "_script_dir", None))
    config = load_config(path)
    logger.debug("configuration %s", config.source)
    return config


def check_lead(config: Config, lead_h: int) -> int:
    """Validate a lead against ``[graf] lead_min_h..lead_max_h`` (UsageError if outside)."""
    return validate_lead(lead_h, config.graf.lead_min_h, config.graf.lead_max_h)


def run_cli(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, set up logging, run ``body(args)`` under the error policy.

    Returns the exit status: ``body``'s return value (0 if None), 2 for usage errors,
    1 for other pqpf errors, 130 on Ctrl-C.
    """
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
        status = body(args)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except PqpfError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)
