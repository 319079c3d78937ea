"""``slurm/submit.py remap|patches|train ...``: print (and submit) the pqpf sbatch jobs."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from pathlib import Path

from pqpf.cli import common

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Print the sbatch command of a pqpf job and, with --submit, run it and print the job id.

  remap BEGIN END      array over chunks of the date range: save_remapped_mrms.py
  patches INIT         array over --leads: save_patched_graf_mrms.py INIT LEAD
  train INIT LEAD      one job: torchrun --nproc_per_node=N train_resunet.py INIT LEAD
  diffusion INIT LEAD  one job: torchrun --nproc_per_node=N train_diffusion.py INIT LEAD

Resources come from the options below (or your own sbatch flags when you run the printed
command yourself); the environment from PQPF_HOME (code directory, default: this
checkout), PQPF_ACTIVATE (e.g. 'source /path/venv/bin/activate'), PQPF_PYTHON (default
python3), all passed to the job. The logs directory is created (sbatch does not).
Resubmitting a remap or patches job is safe: finished outputs are skipped."""


def _shared_options() -> common.PqpfArgumentParser:
    """Options every sub-command takes (SUPPRESS: values given before it are kept)."""
    shared = common.PqpfArgumentParser(add_help=False)
    S = argparse.SUPPRESS
    shared.add_argument("--config", metavar="FILE", default=S,
                        help="site configuration the jobs use; default $PQPF_CONFIG, else "
                             "config_laptop.ini of this checkout (use config_hdo.ini on the HPC)")
    shared.add_argument("-v", "--verbose", action="store_true", default=S, help="log debug detail")
    shared.add_argument("-q", "--quiet", action="store_true", default=S, help="warnings only")
    res = shared.add_argument_group("resources")
    res.add_argument("--partition", default=S, help="sbatch --partition")
    res.add_argument("--account", default=S, help="sbatch --account")
    res.add_argument("--mem", default=S, help="sbatch --mem, e.g. 32G")
    res.add_argument("--cpus-per-task", type=common.positive_int, default=S, metavar="N", help="sbatch --cpus-per-task")
    res.add_argument("--time", default=S, help="sbatch --time, e.g. 04:00:00 (default: the script's)")
    res.add_argument("--logs", metavar="DIR", default=S,
                     help="directory of the job logs (default ./slurm_logs)")
    run = shared.add_argument_group("submission")
    run.add_argument("--submit", action="store_true", default=S, help="run sbatch (default: print only)")
    run.add_argument("--wait", action="store_true", default=S,
                     help="with --submit: wait for the job; exit 1 if any task failed")
    return shared


def build_parser(script_dir: Path | None = None) -> common.PqpfArgumentParser:
    """The command-line parser; ``script_dir`` is the checkout (holds the configs)."""
    parser = common.build_parser("submit.py", _DESCRIPTION, script_dir)
    shared = _shared_options()
    sub = parser.add_subparsers(dest="kind", metavar="JOB", required=True)

    remap = sub.add_parser("remap", parents=[shared], help="remap MRMS over a date range",
                           description="Array job: remap MRMS to the GRAF grid, one chunk per task.")
    common.add_begin_end(remap)
    remap.add_argument("--chunk-hours", type=common.positive_int, default=24, metavar="H",
                       help="hours per array task (default 24)")
    remap.add_argument("--max-parallel", type=common.positive_int, default=None, metavar="K",
                       help="run at most this many tasks at once (--array=...%%K)")

    patches = sub.add_parser("patches", parents=[shared], help="extract patches for leads",
                             description="Array job: patch extraction, one lead per task.")
    patches.add_argument("init", metavar="INIT", type=common.date_arg, help="YYYYMMDDHH")
    patches.add_argument("--leads", required=True, help="lead times, e.g. 1,6,12")
    patches.add_argument("--max-parallel", type=common.positive_int, default=None, metavar="K",
                         help="run at most this many tasks at once")

    for kind, script, what in (("train", "train_resunet.py", "U-Net"),
                               ("diffusion", "train_diffusion.py", "diffusion model")):
        train = sub.add_parser(kind, parents=[shared], help=f"train one lead's {what}",
                               description=f"One job: torchrun --standalone {script} INIT LEAD.")
        common.add_init_lead(train)
        train.add_argument("--nproc", type=common.positive_int, default=None, metavar="N",
                           help="processes (one per GPU); default --gpus, else 1")
        train.add_argument("--gpus", type=common.positive_int, default=None, metavar="N", help="GPUs (--gres=gpu:N)")
        train.add_argument("--hparams-name", dest="hparams", default=None, metavar="NAME",
                           help="hyper-parameter set name (default: the script's)")
    return parser


def _body(args: argparse.Namespace) -> int:
    from pqpf.config import load_config, resolve_config_path
    from pqpf.slurm import (
        SlurmOptions,
        chunk_range,
        parse_leads,
        patches_command,
        remap_command,
        submit,
        train_command,
        wait_for_job,
    )

    home = Path(os.environ.get("PQPF_HOME") or args._script_dir or Path.cwd())
    scripts = Path(args._script_dir or home) / "slurm"  # the sbatch files beside this checkout
    config = load_config(resolve_config_path(args.config, args._script_dir))
    if not (args.config or os.environ.get("PQPF_CONFIG")):
        logger.warning("no --config or $PQPF_CONFIG: the jobs will read %s", config.source)
    options = SlurmOptions(
        logs_dir=Path(getattr(args, "logs", None) or "slurm_logs").resolve(),
        partition=getattr(args, "partition", None), account=getattr(args, "account", None),
        mem=getattr(args, "mem", None), cpus_per_task=getattr(args, "cpus_per_task", None),
        time=getattr(args, "time", None), gpus=getattr(args, "gpus", None),
        max_parallel=getattr(args, "max_parallel", None),
    )
    if args.kind == "remap":
        n_tasks = len(chunk_range(args.begin, args.end, args.chunk_hours))
        cmd = remap_command(args.begin, args.end, args.chunk_hours, options, config.source, home, scripts)
    elif args.kind == "patches":
        leads = parse_leads(args.leads)
        for lead in leads:
            common.check_lead(config, lead)
        n_tasks = len(leads)
        cmd = patches_command(args.init, leads, options, config.source, home, scripts)
    else:
        common.check_lead(config, args.lead)
        n_tasks = 1
        cmd = train_command(args.init, args.lead, args.nproc or args.gpus or 1, options,
                            config.source, home, scripts, hparams_name=args.hparams, kind=args.kind)
    options.logs_dir.mkdir(parents=True, exist_ok=True)
    print(shlex.join(cmd), flush=True)
    if not getattr(args, "submit", False):
        return 0
    job_id = submit(cmd)
    print(job_id, flush=True)
    logger.info("submitted %s job %s (%d task%s), logs in %s", args.kind, job_id, n_tasks,
                "" if n_tasks == 1 else "s", options.logs_dir)
    if not getattr(args, "wait", False):
        return 0
    states = wait_for_job(job_id)
    failed = [s for s in states if s.state != "COMPLETED"]
    for s in failed:
        logger.error("job %s: %s (exit code %s)", s.label, s.state, s.exit_code)
    logger.info("job %s finished: %d of %d tasks completed", job_id,
                len(states) - len(failed), len(states))
    return 1 if failed else 0


def main(argv: list[str] | None = None, script_dir: Path | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 failed, 2 bad usage)."""
    return common.run_cli(build_parser(script_dir), _body, argv)
