"""pqpf.slurm, slurm/submit.py and the sbatch scripts, on the real one-node Slurm cluster.

The array-job tests submit real jobs through ``slurm/submit.py --submit`` and poll
``squeue``. The machinery tests point ``PQPF_HOME`` at a small directory whose
``save_remapped_mrms.py`` is a stand-in (it writes one file per hour and keeps a ledger);
``test_remap_array_job_on_synthetic_archive`` runs the real remap stage on a synthetic
archive once those modules are merged.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqpf.cli.slurm_submit import main as submit_main
from pqpf.dates import hour_range
from pqpf.errors import UsageError
from pqpf.slurm import chunk_range, job_states, parse_leads, select_lead, wait_for_job

ROOT = Path(__file__).resolve().parent.parent
SLURM_DIR = ROOT / "slurm"
SCRIPTS = ("remap_mrms.sbatch", "patches.sbatch", "train.sbatch")


def _config(tmp_path: Path) -> Path:
    text = (ROOT / "config_laptop.ini").read_text()
    path = tmp_path / "site.ini"
    path.write_text(text.replace("${PQPF_DATA:-~/python/resnet_data}", str(tmp_path / "data")))
    return path


# --------------------------------------------------------------------------------------
# Splitting the work
# --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(start_h=st.integers(0, 24 * 400), n_hours=st.integers(1, 24 * 40),
       chunk_hours=st.integers(1, 24 * 10))
def test_chunks_cover_the_range_exactly_once_in_order(start_h, n_hours, chunk_hours):
    begin = dt.datetime(2023, 1, 1) + dt.timedelta(hours=start_h)
    end = begin + dt.timedelta(hours=n_hours - 1)
    chunks = chunk_range(begin, end, chunk_hours)
    covered = [h for a, b in chunks for h in hour_range(a, b)]
    assert covered == list(hour_range(begin, end))
    assert len(chunks) == -(-n_hours // chunk_hours)
    sizes = [len(list(hour_range(a, b))) for a, b in chunks]
    assert all(s == chunk_hours for s in sizes[:-1]) and 1 <= sizes[-1] <= chunk_hours


def test_chunk_range_examples_and_errors():
    b = dt.datetime(2025, 1, 1, 0)
    assert chunk_range(b, b, 24) == [(b, b)]
    assert chunk_range(b, b + dt.timedelta(hours=29), 24) == [
        (b, dt.datetime(2025, 1, 1, 23)), (dt.datetime(2025, 1, 2, 0), dt.datetime(2025, 1, 2, 5))]
    with pytest.raises(UsageError, match="before BEGIN"):
        chunk_range(b, b - dt.timedelta(hours=1), 24)
    with pytest.raises(UsageError, match="positive whole number, got 0"):
        chunk_range(b, b, 0)


def _task_entry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pqpf.slurm", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_task_entry_prints_each_tasks_chunk_and_refuses_extra_tasks():
    outs = [_task_entry("chunk", "2025010100", "2025010205", "8", str(t)).stdout.split()
            for t in range(4)]
    assert outs == [["2025010100", "2025010107"], ["2025010108", "2025010115"],
                    ["2025010116", "2025010123"], ["2025010200", "2025010205"]]
    assert _task_entry("count", "2025010100", "2025010205", "8").stdout.strip() == "4"
    # not an array job: the whole range
    assert _task_entry("chunk", "2025010100", "2025010205", "8", "").stdout.split() == [
        "2025010100", "2025010205"]
    bad = _task_entry("chunk", "2025010100", "2025010205", "8", "4")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == ("pqpf.slurm: error: array task 4 has no chunk: 2025010100.."
                                  "2025010205 in 8 h chunks is 4 tasks (0-3)")


def test_lead_selection_by_array_task():
    assert parse_leads("1,6,12") == parse_leads("1 6 12") == parse_leads(" 1, 6 ,12") == (1, 6, 12)
    assert [select_lead((1, 6, 12), t) for t in range(3)] == [1, 6, 12]
    assert select_lead((18,), None) == 18
    with pytest.raises(UsageError, match="3 leads but no array task id"):
        select_lead((1, 6, 12), None)
    with pytest.raises(UsageError, match="array task 3 has no lead"):
        select_lead((1, 6, 12), 3)
    for bad in ("", "1,x", "1,1", "-3"):
        with pytest.raises(UsageError):
            parse_leads(bad)
    assert _task_entry("lead", "1,6,12", "2").stdout.strip() == "12"


# --------------------------------------------------------------------------------------
# Submit helper: printed commands
# --------------------------------------------------------------------------------------


@pytest.fixture
def helper_env(monkeypatch, tmp_path):
    monkeypatch.delenv("PQPF_HOME", raising=False)
    monkeypatch.delenv("PQPF_CONFIG", raising=False)
    return _config(tmp_path), tmp_path / "logs"


def _printed(capsys) -> list[str]:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return shlex.split(out[0])


def test_submit_helper_prints_the_remap_array_command_and_creates_logs(helper_env, capsys):
    cfg, logs = helper_env
    status = submit_main(["remap", "2025010100", "2025010205", "--config", str(cfg),
                          "--logs", str(logs), "--partition", "debug", "--mem", "4G",
                          "--cpus-per-task", "2", "--time", "01:00:00", "--max-parallel", "3"],
                         script_dir=ROOT)
    assert status == 0
    assert _printed(capsys) == [
        "sbatch", "--parsable", "--array=0-1%3", f"--output={logs}/%x_%A_%a.out",
        "--partition=debug", "--mem=4G", "--cpus-per-task=2", "--time=01:00:00",
        f"--export=ALL,BEGIN=2025010100,END=2025010205,CHUNK_HOURS=24,PQPF_HOME={ROOT},"
        f"PQPF_CONFIG={cfg}",
        str(SLURM_DIR / "remap_mrms.sbatch")]
    assert logs.is_dir()


def test_submit_helper_prints_patches_and_train_commands(helper_env, capsys, monkeypatch):
    cfg, logs = helper_env
    monkeypatch.setenv("PQPF_HOME", "/opt/pqpf")
    assert submit_main(["patches", "2025120100", "--leads", "1,6,12", "--config", str(cfg),
                        "--logs", str(logs)], script_dir=ROOT) == 0
    assert _printed(capsys) == [
        "sbatch", "--parsable", "--array=0-2", f"--output={logs}/%x_%A_%a.out",
        f"--export=ALL,INIT=2025120100,LEADS=1 6 12,PQPF_HOME=/opt/pqpf,PQPF_CONFIG={cfg}",
        str(SLURM_DIR / "patches.sbatch")]
    # options before the sub-command count too
    assert submit_main(["--config", str(cfg), "train", "2025120100", "12", "--gpus", "2",
                        "--hparams-name", "gpu", "--logs", str(logs)], script_dir=ROOT) == 0
    assert _printed(capsys) == [
        "sbatch", "--parsable", f"--output={logs}/%x_%j.out", "--gres=gpu:2",
        f"--export=ALL,INIT=2025120100,LEAD=12,NPROC=2,HPARAMS_NAME=gpu,PQPF_HOME=/opt/pqpf,"
        f"PQPF_CONFIG={cfg}",
        str(SLURM_DIR / "train.sbatch")]


def test_submit_helper_refuses_bad_leads_and_dates_with_exit_2(helper_env, capsys):
    cfg, logs = helper_env
    args = ["--config", str(cfg), "--logs", str(logs)]
    assert submit_main(["patches", "2025120100", "--leads", "1,60", *args], script_dir=ROOT) == 2
    assert "lead 60 h is outside the configured range 1..48 h" in capsys.readouterr().err
    assert submit_main(["remap", "2025010200", "2025010100", *args], script_dir=ROOT) == 2
    assert "is before BEGIN" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        submit_main(["train", "2025023000", "12", *args], script_dir=ROOT)
    assert exc.value.code == 2


# --------------------------------------------------------------------------------------
# The sbatch scripts without Slurm: syntax and PQPF_DRY_RUN
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [*SCRIPTS, "pqpf_job.sh"])
def test_scripts_parse_and_hold_no_home_paths(script):
    text = (SLURM_DIR / script).read_text()
    assert subprocess.run(["bash", "-n", str(SLURM_DIR / script)]).returncode == 0
    for forbidden in ("/home/", "/Users/", "~/", "thamill", "--partition", "--account", "--mem"):
        assert forbidden not in "\n".join(
            line for line in text.splitlines() if line.startswith("#SBATCH") or
            not line.lstrip().startswith("#")), forbidden
    if script != "pqpf_job.sh":
        assert "set -euo pipefail" in text


def _dry(script: str, **env: str) -> tuple[int, list[str], str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
            "PQPF_HOME": str(ROOT), "PQPF_PYTHON": sys.executable, "PQPF_DRY_RUN": "1"}
    proc = subprocess.run(["bash", str(SLURM_DIR / script)], env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("dry run: ")]
    cmd = shlex.split(lines[0][len("dry run: "):]) if lines else []
    return proc.returncode, cmd, proc.stdout + proc.stderr


def test_remap_script_dry_run_runs_its_chunk_only():
    status, cmd, log = _dry("remap_mrms.sbatch", BEGIN="2025010100", END="2025010305",
                            CHUNK_HOURS="24", SLURM_ARRAY_TASK_ID="2",
                            PQPF_CONFIG="/site/config_hdo.ini")
    assert status == 0, log
    assert cmd == [sys.executable, "save_remapped_mrms.py", "2025010300", "2025010305",
                   "--config", "/site/config_hdo.ini"]
    status, cmd, log = _dry("remap_mrms.sbatch", BEGIN="2025010100", END="2025010305")
    assert status == 0 and cmd[2:] == ["2025010100", "2025010305"]  # no array: whole range
    status, cmd, log = _dry("remap_mrms.sbatch", END="2025010305")
    assert status != 0 and cmd == [] and "set BEGIN=YYYYMMDDHH" in log


def test_patches_script_dry_run_takes_the_tasks_lead():
    status, cmd, log = _dry("patches.sbatch", INIT="2025120100", LEADS="1,6,12",
                            SLURM_ARRAY_TASK_ID="1")
    assert status == 0, log
    assert cmd == [sys.executable, "save_patched_graf_mrms.py", "2025120100", "6"]
    status, cmd, log = _dry("patches.sbatch", INIT="2025120100", LEADS="1 6 12",
                            SLURM_ARRAY_TASK_ID="3")
    assert status == 2 and cmd == [] and "array task 3 has no lead" in log


def test_train_script_dry_run_builds_the_torchrun_command():
    status, cmd, log = _dry("train.sbatch", INIT="2025120100", LEAD="12", NPROC="2",
                            HPARAMS_NAME="gpu", PQPF_CONFIG="/site/c.ini",
                            SLURM_CPUS_PER_TASK="8", SLURM_JOB_NAME="pqpf-train")
    assert status == 0, log
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=2", "train_resunet.py", "2025120100", "12",
                   "--hparams-name", "gpu", "--config", "/site/c.ini"]
    assert "2 processes, OMP_NUM_THREADS=4" in log  # 8 CPUs shared by 2 processes
    status, cmd, log = _dry("train.sbatch", INIT="2025120100", LEAD="12", NPROC="2",
                            PQPF_TORCHRUN="torchrun")
    assert cmd == ["torchrun", "--standalone", "--nproc_per_node=2", "train_resunet.py",
                   "2025120100", "12"]
    status, cmd, log = _dry("train.sbatch", INIT="2025120100", LEAD="12", NPROC="0")
    assert status == 2 and "NPROC must be a positive whole number" in log


# --------------------------------------------------------------------------------------
# Real array jobs on the one-node cluster, with a stand-in remap stage
# --------------------------------------------------------------------------------------

_STANDIN = '''\
"""Stand-in for save_remapped_mrms.py: one file per hour of BEGIN..END, skip existing."""
import datetime as dt
import os
import sys
from pathlib import Path

begin, end = (dt.datetime.strptime(a, "%Y%m%d%H") for a in sys.argv[1:3])
config = sys.argv[sys.argv.index("--config") + 1] if "--config" in sys.argv else ""
task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
if task == os.environ.get("STANDIN_FAIL_TASK"):
    print("stand-in: failing on purpose")
    sys.exit(3)
out = Path(os.environ["STANDIN_OUT"])
wrote = skipped = 0
hour = begin
while hour <= end:
    final = out / f"{hour:%Y%m%d%H}.txt"
    if final.exists():
        skipped += 1
    else:
        tmp = out / f".{final.name}.tmp"
        tmp.write_text(f"{hour:%Y%m%d%H}\\n")
        os.replace(tmp, final)
        with open(out / "ledger.txt", "a") as fh:
            fh.write(f"{hour:%Y%m%d%H} {task} {config} {os.environ.get('STANDIN_ACTIVATED')}\\n")
        wrote += 1
    hour += dt.timedelta(hours=1)
print(f"stand-in: wrote {wrote} skipped {skipped}")
'''


@pytest.fixture
def standin(tmp_path):
    """A PQPF_HOME whose remap stage is the stand-in; jobs submitted are cancelled at the end."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "pqpf").symlink_to(ROOT / "pqpf")
    (home / "slurm").symlink_to(SLURM_DIR)
    (home / "save_remapped_mrms.py").write_text(_STANDIN)
    out = tmp_path / "out"
    out.mkdir()
    jobs: list[str] = []
    yield home, out, _config(tmp_path), jobs
    for job in jobs:  # only our own jobs, by id (no-op when they are finished)
        subprocess.run(["scancel", job], capture_output=True, timeout=30)


def _submit(home: Path, out: Path, cfg: Path, logs: Path, jobs: list[str], *extra: str,
            **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PQPF_CONFIG"}
    environ.update(PQPF_HOME=str(home), PQPF_PYTHON=sys.executable, STANDIN_OUT=str(out),
                   PQPF_ACTIVATE="export STANDIN_ACTIVATED=yes", **env)
    proc = subprocess.run(
        [sys.executable, str(SLURM_DIR / "submit.py"), "remap", "2025010100", "2025010205",
         "--chunk-hours", "8", "--config", str(cfg), "--logs", str(logs), "--submit", *extra],
        env=environ, capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    if len(lines) >= 2 and lines[1].isdigit():
        jobs.append(lines[1])
    return proc


def _ledger(out: Path) -> list[list[str]]:
    path = out / "ledger.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slurm
def test_remap_array_job_writes_every_hour_once_and_resubmission_skips(slurm_available,
                                                                       standin, tmp_path):
    home, out, cfg, jobs = standin
    logs = tmp_path / "logs"
    proc = _submit(home, out, cfg, logs, jobs)
    assert proc.returncode == 0, proc.stderr
    command, job_id = proc.stdout.strip().splitlines()
    assert command.startswith("sbatch --parsable --array=0-3 ") and job_id.isdigit()
    states = wait_for_job(job_id, timeout_s=300, poll_s=0.5)
    assert [(s.task_id, s.state, s.exit_code) for s in states] == [
        (t, "COMPLETED", "0:0") for t in range(4)]

    hours = [f"{h:%Y%m%d%H}" for h in hour_range(dt.datetime(2025, 1, 1, 0),
                                                  dt.datetime(2025, 1, 2, 5))]
    ledger = _ledger(out)
    assert sorted(row[0] for row in ledger) == hours                # every hour exactly once
    chunk_of = {h: str(i // 8) for i, h in enumerate(hours)}
    assert all(row[1] == chunk_of[row[0]] for row in ledger)       # by the task owning it
    assert {(row[2], row[3]) for row in ledger} == {(str(cfg), "yes")}  # config, activation
    assert sorted(p.name for p in out.glob("*.txt") if p.name != "ledger.txt") == [
        f"{h}.txt" for h in hours]
    for task, n in enumerate((8, 8, 8, 6)):
        log = (logs / f"pqpf-remap_{job_id}_{task}.out").read_text()
        assert f"stand-in: wrote {n} skipped 0" in log
        assert "running: " in log and "finished with exit status 0" in log

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _submit(home, out, cfg, logs, jobs)
    assert again.returncode == 0, again.stderr
    job2 = again.stdout.strip().splitlines()[1]
    assert job2 != job_id
    assert {s.state for s in wait_for_job(job2, timeout_s=300, poll_s=0.5)} == {"COMPLETED"}
    assert len(_ledger(out)) == 30                                  # nothing written again
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    for task, n in enumerate((8, 8, 8, 6)):
        log = (logs / f"pqpf-remap_{job2}_{task}.out").read_text()
        assert f"stand-in: wrote 0 skipped {n}" in log


@pytest.mark.slurm
def test_failing_array_task_makes_the_job_state_failed(slurm_available, standin, tmp_path):
    home, out, cfg, jobs = standin
    logs = tmp_path / "logs"
    proc = _submit(home, out, cfg, logs, jobs, "--wait", STANDIN_FAIL_TASK="1")
    assert proc.returncode == 1                       # --wait: a task failed
    job_id = proc.stdout.strip().splitlines()[1]
    states = {s.task_id: (s.state, s.exit_code) for s in job_states(job_id)}
    assert states == {0: ("COMPLETED", "0:0"), 1: ("FAILED", "3:0"),
                      2: ("COMPLETED", "0:0"), 3: ("COMPLETED", "0:0")}
    assert f"job {job_id}_1: FAILED (exit code 3:0)" in proc.stderr
    assert "finished with exit status 3" in (logs / f"pqpf-remap_{job_id}_1.out").read_text()
    written = {row[0] for row in _ledger(out)}
    assert len(written) == 22 and not any("2025010108" <= h <= "2025010115" for h in written)


# --------------------------------------------------------------------------------------
# The real remap stage on a synthetic archive (runs once pqpf.synthetic and pqpf.mrms
# are merged)
# --------------------------------------------------------------------------------------


def _snapshot(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns
            for p in directory.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.slurm
def test_remap_array_job_on_synthetic_archive(slurm_available, tmp_path):
    from pqpf.io.netcdf import read_grid_netcdf
    from pqpf.layout import mrms_remapped_path
    from pqpf.synthetic import generate_archive

    begin, end = dt.datetime(2024, 7, 1, 0), dt.datetime(2024, 7, 2, 5)  # 30 hours
    archive = tmp_path / "archive"
    config = generate_archive(archive, begin, end, (1,), "demo", 7)
    cfg = config.source
    env = {**os.environ, "PQPF_HOME": str(ROOT), "PQPF_PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    env.pop("PQPF_ACTIVATE", None)
    subprocess.run([sys.executable, str(ROOT / "terrain_height.py"), "--config", str(cfg)],
                   check=True, cwd=ROOT, env=env, timeout=600)
    logs = tmp_path / "logs"
    submit = [sys.executable, str(SLURM_DIR / "submit.py"), "remap", "2024070100",
              "2024070205", "--chunk-hours", "10", "--config", str(cfg), "--logs", str(logs),
              "--submit"]
    jobs: list[str] = []
    try:
        first = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        jobs.append(first.stdout.split()[-1])
        states = wait_for_job(jobs[0], timeout_s=1200, poll_s=1.0)
        assert [(s.task_id, s.state) for s in states] == [(t, "COMPLETED") for t in range(3)], \
            "\n".join(p.read_text()[-2000:] for p in sorted(logs.iterdir()))
        hours = list(hour_range(begin, end))
        for hour in hours:
            assert mrms_remapped_path(config, hour).is_file(), hour
        for hour in (hours[0], hours[-1]):
            ds = read_grid_netcdf(mrms_remapped_path(config, hour), ["precipitation", "quality"])
            assert ds.data["precipitation"].shape == (ds.grid.ny, ds.grid.nx)

        before = _snapshot(config.paths.mrms_remapped_dir)
        second = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        jobs.append(second.stdout.split()[-1])
        assert {s.state for s in wait_for_job(jobs[1], timeout_s=1200)} == {"COMPLETED"}
        assert _snapshot(config.paths.mrms_remapped_dir) == before   # nothing rewritten
        for task in range(3):
            log = (logs / f"pqpf-remap_{jobs[1]}_{task}.out").read_text().lower()
            assert "skip" in log, log[-2000:]
    finally:
        for job in jobs:
            subprocess.run(["scancel", job], capture_output=True, timeout=30)


def test_submit_helper_diffusion_runs_train_diffusion_in_the_training_job(helper_env, capsys, monkeypatch):
    cfg, logs = helper_env
    monkeypatch.setenv("PQPF_HOME", "/opt/pqpf")
    assert submit_main(["--config", str(cfg), "diffusion", "2025120100", "12", "--gpus", "4",
                        "--hparams-name", "diffusion", "--logs", str(logs)], script_dir=ROOT) == 0
    assert _printed(capsys) == [
        "sbatch", "--parsable", f"--output={logs}/%x_%j.out", "--gres=gpu:4",
        "--export=ALL,INIT=2025120100,LEAD=12,NPROC=4,TRAIN_SCRIPT=train_diffusion.py,HPARAMS_NAME=diffusion,"
        f"PQPF_HOME=/opt/pqpf,PQPF_CONFIG={cfg}",
        str(SLURM_DIR / "train.sbatch")]
    status, cmd, log = _dry("train.sbatch", INIT="2025120100", LEAD="12", NPROC="2",
                            TRAIN_SCRIPT="train_diffusion.py", PQPF_TORCHRUN="torchrun")
    assert status == 0, log
    assert cmd == ["torchrun", "--standalone", "--nproc_per_node=2", "train_diffusion.py", "2025120100", "12"]
    status, cmd, log = _dry("train.sbatch", INIT="2025120100", LEAD="12", TRAIN_SCRIPT="rm.py")
    assert status == 2 and "TRAIN_SCRIPT must be" in log
