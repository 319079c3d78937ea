"""copy_graf_to_laptop / pqpf.stages.fetch against the real loopback sshd (127.0.0.1:2222).

The "remote" archive is a directory on this machine reached through ssh, so the remote
file is written by the test in the archive layout and must arrive byte-identical at the
laptop path. Host keys come from a copy of the sshd's known_hosts, so the test can prove
that pqpf never writes to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pqpf.cli.copy_graf_to_laptop import main as cli_main
from pqpf.config import load_config
from pqpf.errors import ConfigError, RemoteError
from pqpf.layout import graf_laptop_path, graf_remote_path
from pqpf.stages.fetch import fetch_graf, ssh_command, transfer_command

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("CI_SSHD_PORT", "2222"))
INIT_NEW = dt.datetime(2025, 12, 4, 12)   # hdo-graf_conus
INIT_OLD = dt.datetime(2024, 4, 5, 12)    # last init of hdo-graflr_conus


def _write_config(tmp_path: Path, ssh_options: str, host: str = "127.0.0.1",
                  user: str = "root", remote_dir: str | None = None) -> Path:
    remote = str(tmp_path / "hpc") if remote_dir is None else remote_dir
    text = (ROOT / "config_laptop.ini").read_text()
    text = text.replace("${PQPF_DATA:-~/python/resnet_data}", str(tmp_path / "laptop"))
    text = (text.replace("host =", f"host = {host}").replace("user =", f"user = {user}")
            .replace("remote_graf_dir =", f"remote_graf_dir = {remote}")
            .replace("ssh_options =", f"ssh_options = {ssh_options}"))
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


def _ssh_options(sshd: Path, known_hosts: Path) -> str:
    return (f"-p {PORT} -i {sshd / 'id_ed25519'} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={known_hosts}")


@pytest.fixture
def known_hosts(sshd_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the sshd's known_hosts (so a bug cannot damage the shared one)."""
    copy = tmp_path / "known_hosts"
    copy.write_bytes((sshd_dir / "known_hosts").read_bytes())
    return copy


@pytest.fixture
def cfg(sshd_dir: Path, known_hosts: Path, tmp_path: Path):
    return load_config(_write_config(tmp_path, _ssh_options(sshd_dir, known_hosts)))


def _put_remote(config, init: dt.datetime, lead_h: int, size: int = 200_000, seed: int = 1) -> bytes:
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = bytes(b ^ (i % 251) for i, b in enumerate(data[:size]))
    path = Path(graf_remote_path(config, init, lead_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _state(path: Path) -> tuple[str, int]:
    return _sha(path.read_bytes()), path.stat().st_mtime_ns


def _files_below(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# --------------------------------------------------------------------------------------
# Real transfers
# --------------------------------------------------------------------------------------


@pytest.mark.sshd
@pytest.mark.parametrize("method, init", [("rsync", INIT_NEW), ("scp", INIT_OLD)])
def test_fetch_arrives_byte_identical_in_laptop_layout(cfg, known_hosts, method, init):
    data = _put_remote(cfg, init, 12)
    before = _state(known_hosts)
    local = fetch_graf(cfg, init, 12, method=method)
    archive = "hdo-graf_conus" if init == INIT_NEW else "hdo-graflr_conus"
    assert local == graf_laptop_path(cfg, init, 12)
    assert local.parent == cfg.paths.graf_laptop_dir / archive / f"{init:%Y%m%d}" / f"{init:%H}"
    assert _sha(local.read_bytes()) == _sha(data)
    # modification time preserved (rsync --times, scp -p), to the second
    remote = Path(graf_remote_path(cfg, init, 12))
    assert abs(local.stat().st_mtime - remote.stat().st_mtime) < 1.0
    # nothing else left beside it (no temporary, no partial directory)
    assert _files_below(cfg.paths.graf_laptop_dir) == [local]
    assert list(local.parent.iterdir()) == [local]
    assert _state(known_hosts) == before


@pytest.mark.sshd
def test_existing_file_is_kept_unless_overwrite_even_with_same_size_and_time(cfg):
    data = _put_remote(cfg, INIT_NEW, 6)
    local = graf_laptop_path(cfg, INIT_NEW, 6)
    local.parent.mkdir(parents=True)
    local.write_bytes(b"x" * len(data))     # same size, wrong content
    remote = Path(graf_remote_path(cfg, INIT_NEW, 6))
    os.utime(local, ns=(remote.stat().st_atime_ns, remote.stat().st_mtime_ns))
    assert fetch_graf(cfg, INIT_NEW, 6) == local
    assert local.read_bytes() == b"x" * len(data)
    # rsync's quick check (size + time) would call this up to date: --ignore-times must not
    fetch_graf(cfg, INIT_NEW, 6, method="rsync", overwrite=True)
    assert _sha(local.read_bytes()) == _sha(data)


@pytest.mark.sshd
def test_auto_falls_back_to_scp_when_rsync_is_not_installed(cfg, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"            # a PATH with ssh and scp but no rsync
    bin_dir.mkdir()
    for tool in ("ssh", "scp"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True,
                                                   text=True).stdout.strip())
    monkeypatch.setenv("PATH", str(bin_dir))
    assert fetch_graf(cfg, INIT_NEW, 2, dry_run=True).startswith("scp -p -o BatchMode=yes ")
    data = _put_remote(cfg, INIT_NEW, 2)
    local = fetch_graf(cfg, INIT_NEW, 2)
    assert _sha(local.read_bytes()) == _sha(data)
    assert list(local.parent.iterdir()) == [local]     # the temporary name was renamed


def test_existing_local_file_is_kept_without_contacting_the_remote(tmp_path):
    config = load_config(_write_config(tmp_path, "", host=""))  # no remote configured
    local = graf_laptop_path(config, INIT_NEW, 5)
    local.parent.mkdir(parents=True)
    local.write_bytes(b"grib")
    assert fetch_graf(config, INIT_NEW, 5) == local and local.read_bytes() == b"grib"
    with pytest.raises(ConfigError, match=r"\[remote\] host is empty"):
        fetch_graf(config, INIT_NEW, 5, overwrite=True)


@pytest.mark.sshd
@pytest.mark.parametrize("method", ["rsync", "scp"])
def test_unknown_host_key_is_refused_and_known_hosts_stays_empty(sshd_dir, tmp_path, method):
    empty = tmp_path / "fresh_known_hosts"
    empty.write_bytes(b"")
    config = load_config(_write_config(tmp_path, _ssh_options(sshd_dir, empty)))
    _put_remote(config, INIT_NEW, 12)
    with pytest.raises(RemoteError) as exc:
        fetch_graf(config, INIT_NEW, 12, method=method)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("host key of 127.0.0.1 not in known_hosts; verify it and "
                              "connect once with ssh")
    assert f"({method} exit " in message
    assert empty.read_bytes() == b""
    assert not config.paths.graf_laptop_dir.exists()   # not even empty directories left


@pytest.mark.sshd
def test_changed_host_key_is_refused_with_its_own_message(sshd_dir, tmp_path):
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    other = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{PORT} {other}\n")
    before = _state(wrong)
    config = load_config(_write_config(tmp_path, _ssh_options(sshd_dir, wrong)))
    _put_remote(config, INIT_NEW, 3)
    with pytest.raises(RemoteError, match=r"^host key of 127\.0\.0\.1 has CHANGED .*\(rsync exit \d+\)$"):
        fetch_graf(config, INIT_NEW, 3, method="rsync")
    assert _state(wrong) == before
    assert _files_below(config.paths.graf_laptop_dir) == []


@pytest.mark.sshd
@pytest.mark.parametrize("method, code", [("rsync", 23), ("scp", 1)])
def test_missing_remote_file_is_one_clear_error_naming_it(cfg, method, code):
    remote = graf_remote_path(cfg, INIT_NEW, 7)
    with pytest.raises(RemoteError) as exc:
        fetch_graf(cfg, INIT_NEW, 7, method=method)
    assert str(exc.value) == f"remote file not found: root@127.0.0.1:{remote} ({method} exit {code})"
    assert not cfg.paths.graf_laptop_dir.exists()


@pytest.mark.sshd
def test_refused_connection_is_one_line(sshd_dir, known_hosts, tmp_path):
    options = _ssh_options(sshd_dir, known_hosts).replace(f"-p {PORT}", "-p 1")
    config = load_config(_write_config(tmp_path, options))
    with pytest.raises(RemoteError, match=r"^connection to 127\.0\.0\.1 refused.*\(rsync exit \d+\)$"):
        fetch_graf(config, INIT_NEW, 1, method="rsync")


@pytest.mark.sshd
def test_unauthorized_key_is_a_failed_login(sshd_dir, known_hosts, tmp_path):
    key = tmp_path / "not_authorized"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    options = _ssh_options(sshd_dir, known_hosts).replace(str(sshd_dir / "id_ed25519"), str(key))
    config = load_config(_write_config(tmp_path, options))
    with pytest.raises(RemoteError, match=r"^ssh login to 127\.0\.0\.1 failed \(Permission "
                                          r"denied\): check \[remote\] user .*\(scp exit 255\)$"):
        fetch_graf(config, INIT_NEW, 1, method="scp")


@pytest.mark.sshd
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_killed_rsync_leaves_no_file_under_the_real_name(cfg, sig):
    data = _put_remote(cfg, INIT_NEW, 24, size=3_000_000)
    local = graf_laptop_path(cfg, INIT_NEW, 24)
    local.parent.mkdir(parents=True)
    cmd = transfer_command(cfg, INIT_NEW, 24, method="rsync")
    cmd.insert(1, "--bwlimit=400")  # KB/s: the copy takes ~7 s, so it is killed midway
    # its own process group, killed as a whole (like Ctrl-C, or Slurm ending a job)
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        temporaries = [p for p in local.parent.iterdir() if p.name.startswith(f".{local.name}.")]
        if temporaries and temporaries[0].stat().st_size > 100_000:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("rsync never started writing its temporary file")
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=20) != 0
    time.sleep(0.5)  # rsync's receiver is a separate process: let it finish its clean-up
    assert not local.exists()
    if sig == signal.SIGTERM:  # rsync keeps what it has for the next run
        partial = local.parent / ".rsync-partial" / local.name
        assert 0 < partial.stat().st_size < len(data)
    # the next run completes (resuming from the partial file) and cleans up after itself
    assert fetch_graf(cfg, INIT_NEW, 24) == local
    assert _sha(local.read_bytes()) == _sha(data)
    assert not (local.parent / ".rsync-partial").exists()
    leftovers = [p for p in local.parent.iterdir() if p != local]
    assert all(p.name.startswith(f".{local.name}.") for p in leftovers)  # hidden only
    if leftovers:  # SIGKILL leaves rsync's temporary: removed once it is an hour old
        os.utime(leftovers[0], (time.time() - 7200, time.time() - 7200))
        fetch_graf(cfg, INIT_NEW, 24, overwrite=True)
        assert list(local.parent.iterdir()) == [local]


# --------------------------------------------------------------------------------------
# Commands and configuration (no network)
# --------------------------------------------------------------------------------------


def test_ssh_command_puts_host_key_enforcement_before_user_options(tmp_path):
    config = load_config(_write_config(tmp_path, "-p 2222 -o connecttimeout=5 -C"))
    cmd = ssh_command(config)
    assert cmd[:9] == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                       "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no"]
    # the user's options next (keys spelled canonically), overridable defaults last
    assert cmd[9:14] == ["-p", "2222", "-o", "ConnectTimeout=5", "-C"]
    assert cmd[14:] == ["-o", "ConnectTimeout=30", "-o", "ServerAliveInterval=15",
                        "-o", "ServerAliveCountMax=4"]


def test_scp_command_writes_the_port_as_an_option_and_preserves_times(tmp_path):
    config = load_config(_write_config(tmp_path, "-p2222 -l alice -i /k -4", user=""))
    cmd = transfer_command(config, INIT_NEW, 12, method="scp")
    assert cmd[:2] == ["scp", "-p"]
    assert "-P" not in cmd and "2222" not in cmd
    assert ["-o", "Port=2222"] == cmd[cmd.index("Port=2222") - 1: cmd.index("Port=2222") + 1]
    assert "User=alice" in cmd and "-4" in cmd and cmd[cmd.index("-i") + 1] == "/k"
    assert cmd[-2] == "127.0.0.1:" + graf_remote_path(config, INIT_NEW, 12)  # no user@


def test_rsync_command_takes_remote_home_relative_paths_and_user(tmp_path):
    config = load_config(_write_config(tmp_path, "", host="hpc.example", remote_dir="~/graf"))
    cmd = transfer_command(config, INIT_NEW, 12, method="rsync")
    assert cmd[0] == "rsync" and "--protect-args" in cmd and "--times" in cmd
    assert "--partial-dir=.rsync-partial" in cmd
    assert shlex.split(cmd[cmd.index("-e") + 1])[:5] == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    assert cmd[-2].startswith("root@hpc.example:graf/hdo-graf_conus/20251204/12/")
    assert cmd[-1] == str(graf_laptop_path(config, INIT_NEW, 12))


@pytest.mark.parametrize("key, values", [("host", {"host": ""}),
                                         ("remote_graf_dir", {"remote_dir": ""})])
def test_empty_host_or_directory_is_a_config_error_naming_file_and_key(tmp_path, key, values):
    config = load_config(_write_config(tmp_path, "", **values))
    with pytest.raises(ConfigError, match=rf"^{config.source}: \[remote\] {key} is empty"):
        fetch_graf(config, INIT_NEW, 12, dry_run=True)


def test_garbage_in_ssh_options_is_refused(tmp_path):
    config = load_config(_write_config(tmp_path, "-p 2222 myhost"))
    with pytest.raises(ConfigError, match="expected only ssh options, got 'myhost'"):
        ssh_command(config)




# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def test_dry_run_prints_a_strict_command_and_runs_nothing(tmp_path, capsys):
    cfg_path = _write_config(tmp_path, "-p 2222 -i /keys/id")
    status = cli_main(["--config", str(cfg_path), "--dry-run", "--method", "rsync",
                       "2025120412", "12"])
    assert status == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("rsync ") and "StrictHostKeyChecking=yes" in out
    assert "BatchMode=yes" in out and "-p 2222 -i /keys/id" in out
    config = load_config(cfg_path)
    assert out.endswith(shlex.quote(str(graf_laptop_path(config, INIT_NEW, 12))))
    assert not (tmp_path / "laptop").exists()


@pytest.mark.sshd
def test_cli_exit_codes_are_0_fetched_1_failed_2_bad_lead(cfg, capsys):
    data = _put_remote(cfg, INIT_NEW, 12)
    args = ["--config", str(cfg.source), "-q"]
    assert cli_main([*args, "2025120412", "12"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(graf_laptop_path(cfg, INIT_NEW, 12))
    assert _sha(Path(out).read_bytes()) == _sha(data)

    assert cli_main([*args, "2025120412", "13"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("copy_graf_to_laptop.py: error: remote file not found: root@127.0.0.1:")
    assert "\n" not in err

    assert cli_main([*args, "2025120412", "49"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "copy_graf_to_laptop.py: error: lead 49 h is outside the configured range 1..48 h"


def test_top_level_script_help_is_instant_and_names_the_config():
    proc = subprocess.run([sys.executable, str(ROOT / "copy_graf_to_laptop.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0
    assert "INIT" in proc.stdout and "--dry-run" in proc.stdout and "--method" in proc.stdout
