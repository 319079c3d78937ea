"""Slurm: split work into array tasks, build and submit the sbatch commands, wait for jobs.

The sbatch scripts in ``slurm/`` do no date arithmetic themselves; each array task asks
this module which piece of the work is its own::

    python -m pqpf.slurm chunk BEGIN END CHUNK_HOURS TASK_ID   # prints "START END"
    python -m pqpf.slurm lead LEADS TASK_ID                    # prints one lead
    python -m pqpf.slurm count BEGIN END CHUNK_HOURS           # prints the number of chunks

``slurm/submit.py`` (:mod:`pqpf.cli.slurm_submit`) builds the sbatch command lines with
:func:`remap_command`, :func:`patches_command` and :func:`train_command`, prints them and,
when asked, runs them (:func:`submit`) and waits (:func:`wait_for_job`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pqpf.dates import format_yyyymmddhh, hour_range, parse_yyyymmddhh
from pqpf.errors import MissingDependencyError, PqpfError, UsageError

__all__ = [
    "SCRIPTS",
    "SlurmError",
    "SlurmOptions",
    "TaskState",
    "chunk_range",
    "parse_leads",
    "select_lead",
    "remap_command",
    "patches_command",
    "train_command",
    "submit",
    "job_states",
    "wait_for_job",
]

logger = logging.getLogger(__name__)

#: Job kind -> sbatch script in ``slurm/``.
SCRIPTS = {
    "remap": "remap_mrms.sbatch",
    "patches": "patches.sbatch",
    "train": "train.sbatch",
    "diffusion": "train.sbatch",  # the same torchrun job with TRAIN_SCRIPT=train_diffusion.py
}

#: Training script each training job kind runs.
TRAIN_SCRIPTS = {"train": "train_resunet.py", "diffusion": "train_diffusion.py"}



class SlurmError(PqpfError):
    """sbatch refused a job, or a job did not finish in time."""


# --------------------------------------------------------------------------------------
# Splitting the work
# --------------------------------------------------------------------------------------


def chunk_range(
    begin: dt.datetime, end: dt.datetime, chunk_hours: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split the hours ``begin..end`` (inclusive) into consecutive chunks.

    Parameters
    ----------
    begin, end : datetime
        First and last hour (UTC), ``end >= begin``.
    chunk_hours : int
        Hours per chunk, >= 1; the last chunk may be shorter.

    Returns
    -------
    list of (start, stop)
        Inclusive bounds; together they cover every hour exactly once, in order.

    Raises
    ------
    UsageError
        If ``end`` precedes ``begin`` or ``chunk_hours`` < 1.
    """
    if int(chunk_hours) != chunk_hours or chunk_hours < 1:
        raise UsageError(f"chunk hours must be a positive whole number, got {chunk_hours}")
    chunk_hours = int(chunk_hours)
    starts = list(hour_range(begin, end, chunk_hours))
    step = dt.timedelta(hours=chunk_hours - 1)
    return [(start, min(start + step, end)) for start in starts]


def parse_leads(text: str) -> tuple[int, ...]:
    """``"1,6,12"`` (commas and/or spaces) -> ``(1, 6, 12)``; no duplicates, none negative.

    Raises
    ------
    UsageError
        If the list is empty or holds something that is not a whole number of hours.
    """
    items = [s for s in re.split(r"[\s,]+", str(text).strip()) if s]
    if not items:
        raise UsageError(f"expected a list of lead times like 1,6,12, got {text!r}")
    try:
        leads = tuple(int(s) for s in items)
    except ValueError:
        raise UsageError(f"lead times must be whole hours like 1,6,12, got {text!r}") from None
    if any(lead < 0 for lead in leads) or len(set(leads)) != len(leads):
        raise UsageError(f"lead times must be distinct and not negative, got {text!r}")
    return leads


def select_lead(leads: tuple[int, ...], task_id: int | None) -> int:
    """The lead of array task ``task_id`` (``None``: not an array job, needs one lead)."""
    if task_id is None:
        if len(leads) != 1:
            raise UsageError(f"{len(leads)} leads but no array task id: submit with "
                             f"--array=0-{len(leads) - 1}")
        return leads[0]
    if not 0 <= task_id < len(leads):
        raise UsageError(f"array task {task_id} has no lead: there are {len(leads)} "
                         f"(tasks 0-{len(leads) - 1})")
    return leads[task_id]


# --------------------------------------------------------------------------------------
# sbatch command lines
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmOptions:
    """Where and with what a job runs; ``None`` leaves the cluster's (or script's) default.

    Attributes
    ----------
    logs_dir : Path
        Directory of the job logs (``%x_%A_%a.out``); sbatch does not create it.
    partition, account, mem, time : str, optional
        As sbatch takes them (``--mem=32G``, ``--time=04:00:00``).
    cpus_per_task, gpus : int, optional
        ``--cpus-per-task``; ``--gres=gpu:N``.
    max_parallel : int, optional
        At most this many array tasks at once (``--array=0-9%K``).
    """

    logs_dir: Path
    partition: str | None = None
    account: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    time: str | None = None
    gpus: int | None = None
    max_parallel: int | None = None


def _export_value(name: str, value: str) -> str:
    text = str(value)
    if "," in text or "\n" in text:
        raise UsageError(f"{name}={text!r}: sbatch --export cannot carry commas or newlines")
    return text


def _sbatch(
    kind: str, options: SlurmOptions, exports: dict[str, str], n_tasks: int | None,
    scripts_dir: Path,
) -> list[str]:
    script = Path(scripts_dir) / SCRIPTS[kind]
    logs = str(Path(options.logs_dir).resolve()).replace("%", "%%")
    cmd = ["sbatch", "--parsable"]
    if n_tasks is not None:
        throttle = f"%{options.max_parallel}" if options.max_parallel else ""
        cmd += [f"--array=0-{n_tasks - 1}{throttle}", f"--output={logs}/%x_%A_%a.out"]
    else:
        cmd += [f"--output={logs}/%x_%j.out"]
    for flag, value in (("partition", options.partition), ("account", options.account),
                        ("mem", options.mem), ("cpus-per-task", options.cpus_per_task),
                        ("time", options.time)):
        if value is not None:
            cmd.append(f"--{flag}={value}")
    if options.gpus:
        cmd.append(f"--gres=gpu:{options.gpus}")
    pairs = ",".join(f"{k}={_export_value(k, v)}" for k, v in exports.items())
    cmd += [f"--export=ALL,{pairs}", str(script)]
    return cmd


def _env(pqpf_home: Path, config_path: Path) -> dict[str, str]:
    return {"PQPF_HOME": str(Path(pqpf_home).resolve()),
            "PQPF_CONFIG": str(Path(config_path).resolve())}


def remap_command(
    begin: dt.datetime, end: dt.datetime, chunk_hours: int, options: SlurmOptions,
    config_path: Path, pqpf_home: Path, scripts_dir: Path,
) -> list[str]:
    """sbatch command of the MRMS remap array: one task per chunk of ``chunk_hours``."""
    n_chunks = len(chunk_range(begin, end, chunk_hours))
    exports = {"BEGIN": format_yyyymmddhh(begin), "END": format_yyyymmddhh(end),
               "CHUNK_HOURS": str(int(chunk_hours)), **_env(pqpf_home, config_path)}
    return _sbatch("remap", options, exports, n_chunks, scripts_dir)


def patches_command(
    init: dt.datetime, leads: tuple[int, ...], options: SlurmOptions,
    config_path: Path, pqpf_home: Path, scripts_dir: Path,
) -> list[str]:
    """sbatch command of the patch-extraction array: one task per lead time.

    ``LEADS`` is exported space-separated because sbatch splits ``--export`` at commas.
    """
    exports = {"INIT": format_yyyymmddhh(init), "LEADS": " ".join(str(x) for x in leads),
               **_env(pqpf_home, config_path)}
    return _sbatch("patches", options, exports, len(leads), scripts_dir)


def train_command(
    init: dt.datetime, lead_h: int, nproc: int, options: SlurmOptions,
    config_path: Path, pqpf_home: Path, scripts_dir: Path, hparams_name: str | None = None,
    kind: str = "train",
) -> list[str]:
    """sbatch command of one training job running ``nproc`` processes under torchrun.

    ``kind`` "train" trains the U-Net (train_resunet.py), "diffusion" the lead's
    diffusion model (train_diffusion.py; the lead's U-Net must be registered).
    """
    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}")
    if kind not in TRAIN_SCRIPTS:
        raise UsageError(f"unknown training kind {kind!r}; valid: {', '.join(TRAIN_SCRIPTS)}")
    exports = {"INIT": format_yyyymmddhh(init), "LEAD": str(int(lead_h)), "NPROC": str(nproc)}
    if kind != "train":
        exports["TRAIN_SCRIPT"] = TRAIN_SCRIPTS[kind]
    if hparams_name:
        exports["HPARAMS_NAME"] = hparams_name
    exports.update(_env(pqpf_home, config_path))
    return _sbatch(kind, options, exports, None, scripts_dir)


# --------------------------------------------------------------------------------------
# Submitting and waiting
# --------------------------------------------------------------------------------------


def _slurm_tool(cmd: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except FileNotFoundError:
        raise MissingDependencyError(f"{cmd[0]} not found: is this a Slurm machine?") from None


def submit(cmd: list[str]) -> str:
    """Run an sbatch command (with ``--parsable``) and return the job id.

    The ``--output`` directory is created first: sbatch does not create it and a
    missing one fails the job at launch.
    """
    for arg in cmd:
        if arg.startswith("--output="):
            Path(arg.split("=", 1)[1].replace("%%", "%")).parent.mkdir(parents=True, exist_ok=True)
    proc = _slurm_tool(cmd)
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise SlurmError(f"sbatch refused the job: {detail}")
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id (got {proc.stdout.strip()!r})")
    return job_id


@dataclass(frozen=True)
class TaskState:
    """State of one job or array task, from ``scontrol show job``.

    ``job_id`` is the id sbatch printed (the array's id for array tasks); ``exit_code``
    is Slurm's ``status:signal``, e.g. ``"3:0"``.
    """

    job_id: str
    task_id: int | None
    state: str
    exit_code: str

    @property
    def label(self) -> str:
        """``JOBID_TASK`` for array tasks (as squeue shows them), else ``JOBID``."""
        return self.job_id if self.task_id is None else f"{self.job_id}_{self.task_id}"


_FIELD = re.compile(r"(\w+)=(\S*)")


def job_states(job_id: str) -> list[TaskState]:
    """States of a job's tasks (``scontrol show job -o``; kept ~5 min after the end).

    Returns an empty list once Slurm has forgotten the job.
    """
    proc = _slurm_tool(["scontrol", "show", "job", "-o", str(job_id)])
    states = []
    for line in proc.stdout.splitlines():
        fields = dict(_FIELD.findall(line))
        if "JobState" not in fields:
            continue
        task = fields.get("ArrayTaskId", "")
        states.append(TaskState(
            job_id=fields.get("ArrayJobId") or fields.get("JobId", ""),
            task_id=int(task) if task.isdigit() else None,
            state=fields["JobState"],
            exit_code=fields.get("ExitCode", ""),
        ))
    return sorted(states, key=lambda s: (s.task_id is None, s.task_id or 0))


def wait_for_job(job_id: str, timeout_s: float = 3600.0, poll_s: float = 1.0) -> list[TaskState]:
    """Poll ``squeue`` until the job (all its array tasks) has left the queue.

    Faster than ``sbatch --wait``, which polls slowly. Returns the final task states.

    Raises
    ------
    SlurmError
        If the job is still queued or running after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        proc = _slurm_tool(["squeue", "-h", "-j", str(job_id), "-o", "%i %T"])
        if proc.returncode != 0 or not proc.stdout.strip():
            return job_states(job_id)
        if time.monotonic() > deadline:
            raise SlurmError(f"job {job_id} still in the queue after {timeout_s:.0f} s: "
                             + " ".join(proc.stdout.split()))
        time.sleep(poll_s)


# --------------------------------------------------------------------------------------
# Array task entry point
# --------------------------------------------------------------------------------------

_USAGE = """usage: python -m pqpf.slurm chunk BEGIN END CHUNK_HOURS TASK_ID
       python -m pqpf.slurm count BEGIN END CHUNK_HOURS
       python -m pqpf.slurm lead LEADS TASK_ID    (TASK_ID may be empty: one lead)"""


def _task_id(text: str) -> int | None:
    if text.strip() == "":
        return None
    if not text.strip().isdigit():
        raise UsageError(f"array task id must be a whole number, got {text!r}")
    return int(text)


def _main(argv: list[str]) -> int:
    try:
        if len(argv) == 5 and argv[0] == "chunk":
            chunks = chunk_range(parse_yyyymmddhh(argv[1], "BEGIN"),
                                 parse_yyyymmddhh(argv[2], "END"), _int(argv[3]))
            task = _task_id(argv[4])
            if task is None:
                start, stop = chunks[0][0], chunks[-1][1]
            elif 0 <= task < len(chunks):
                start, stop = chunks[task]
            else:
                raise UsageError(f"array task {task} has no chunk: {argv[1]}..{argv[2]} in "
                                 f"{argv[3]} h chunks is {len(chunks)} tasks (0-{len(chunks) - 1})")
            print(format_yyyymmddhh(start), format_yyyymmddhh(stop))
        elif len(argv) == 4 and argv[0] == "count":
            print(len(chunk_range(parse_yyyymmddhh(argv[1], "BEGIN"),
                                  parse_yyyymmddhh(argv[2], "END"), _int(argv[3]))))
        elif len(argv) == 3 and argv[0] == "lead":
            print(select_lead(parse_leads(argv[1]), _task_id(argv[2])))
        else:
            print(_USAGE, file=sys.stderr)
            return 2
    except UsageError as exc:
        print(f"pqpf.slurm: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"chunk hours must be a whole number, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
