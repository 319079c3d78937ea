"""The ``copy_graf_to_laptop.py`` stage: fetch one GRAF forecast from the HPC archive over ssh.

The remote file is ``{remote_graf_dir}/{archive}/{YYYYMMDD}/{HH}/{file}``
(:func:`pqpf.layout.graf_remote_path`); the local copy goes to the same layout below
``graf_laptop_dir`` (:func:`pqpf.layout.graf_laptop_path`). Host, user, remote directory
and extra ssh options come from the ``[remote]`` section of the site configuration.

Host keys are always checked. Every ssh invocation starts with::

    ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UpdateHostKeys=no -o CheckHostIP=no

before the user's ``ssh_options``; ssh keeps the *first* value it sees for an option, so
nothing later can weaken these. An unknown or changed host key is refused and
``known_hosts`` is never written (no ``accept-new``, no learning of extra keys or IP
addresses). ``ssh_options`` may hold only the options of :mod:`pqpf.ssh_policy`'s
allow-list (port, key, known_hosts file, time-outs, ...); anything else, and a host or
user that could be read as an option or a path, is a :class:`~pqpf.errors.ConfigError`
naming the key, so the configuration says what actually happens.

Neither tool ever leaves a half-written file under the real name: rsync writes to a
hidden temporary name and renames; an interrupted rsync keeps what it had in
``.rsync-partial/`` beside the target and resumes from it next time. The scp fallback
writes to a temporary name (:func:`pqpf.io.atomic.atomic_path`) and renames on success.

Remote paths: a leading ``~/`` is dropped (a relative path is relative to the remote
home directory for both tools; ``rsync --protect-args`` would not expand ``~``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import logging
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pqpf.config import Config, RemoteConfig
from pqpf.errors import ConfigError, MissingDependencyError, RemoteError
from pqpf.io.atomic import atomic_path, remove_stale_temporaries
from pqpf.layout import graf_laptop_path, graf_remote_path
from pqpf.ssh_policy import check_host, check_user, ssh_option_pairs

__all__ = ["METHODS", "fetch_graf", "transfer_command", "ssh_command"]

logger = logging.getLogger(__name__)

#: Transfer methods; "auto" is rsync when installed, else scp.
METHODS = ("auto", "rsync", "scp")

# Placed BEFORE the user's options: for ssh the first value of an option wins.
_ENFORCED_OPTIONS = (
    "BatchMode=yes",               # never prompt (passwords, unknown keys): fail instead
    "StrictHostKeyChecking=yes",   # refuse unknown and changed host keys
    "UpdateHostKeys=no",           # never add keys to known_hosts after login
    "CheckHostIP=no",              # never add IP-address entries to known_hosts
)
# Placed AFTER the user's options: defaults the user may override.
_DEFAULT_OPTIONS = ("ConnectTimeout=30", "ServerAliveInterval=15", "ServerAliveCountMax=4")

# ssh option letters that scp spells differently (scp's -p keeps times, -P is the port).
_SCP_AS_CONFIG = {"p": "Port", "l": "User"}

_RSYNC_PARTIAL_DIR = ".rsync-partial"


# --------------------------------------------------------------------------------------
# ssh options
# --------------------------------------------------------------------------------------


def _where(config: Config, key: str) -> str:
    return f"{config.source}: [remote] {key}"


def _validated_remote(config: Config) -> RemoteConfig:
    remote = config.remote
    if not remote.host.strip():
        raise ConfigError(f"{_where(config, 'host')} is empty: set the HPC machine's host name "
                          "or ~/.ssh/config alias")
    if not remote.remote_graf_dir.strip():
        raise ConfigError(f"{_where(config, 'remote_graf_dir')} is empty: set the directory "
                          "on the remote machine that holds hdo-graf_conus/ and hdo-graflr_conus/")
    check_host(remote.host.strip(), _where(config, "host"))
    check_user(remote.user.strip(), _where(config, "user"))
    return remote


def _user_ssh_pairs(config: Config) -> list[tuple[str, str | None]]:
    return ssh_option_pairs(config.remote.ssh_options, _where(config, "ssh_options"))


def _pairs_to_args(pairs: list[tuple[str, str | None]]) -> list[str]:
    args: list[str] = []
    for letter, value in pairs:
        args.append(f"-{letter}")
        if value is not None:
            args.append(value)
    return args


def _with_o(options: tuple[str, ...]) -> list[str]:
    return [arg for opt in options for arg in ("-o", opt)]


def ssh_command(config: Config) -> list[str]:
    """The ssh command (program and options, no host) used for every transfer.

    Host-key enforcement comes first, the user's ``ssh_options`` next, overridable
    defaults (connect timeout, keep-alive) last.

    Raises
    ------
    ConfigError
        If ``[remote]`` lacks a host or directory, host or user could be read as an option
        or a path, or ``ssh_options`` holds anything outside :mod:`pqpf.ssh_policy`'s
        allow-list.
    """
    _validated_remote(config)
    return ["ssh", *_with_o(_ENFORCED_OPTIONS), *_pairs_to_args(_user_ssh_pairs(config)),
            *_with_o(_DEFAULT_OPTIONS)]


def _scp_options(config: Config) -> list[str]:
    """The user's ssh options for scp: ``-p N`` becomes ``-o Port=N``, ``-l U`` ``-o User=U``.

    scp uses ``-P`` for the port and ``-p`` to preserve times; writing the port as
    ``-o Port=N`` avoids any confusion between the two. The other allowed options are
    spelled the same by both tools.
    """
    args: list[str] = []
    for letter, value in _user_ssh_pairs(config):
        if letter in _SCP_AS_CONFIG:
            args += ["-o", f"{_SCP_AS_CONFIG[letter]}={value}"]
        else:
            args += [f"-{letter}"] + ([value] if value is not None else [])
    return args


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _remote_spec(remote: RemoteConfig, path: str) -> str:
    host = remote.host.strip()
    if ":" in host and not host.startswith("["):  # IPv6 literal
        host = f"[{host}]"
    user = remote.user.strip()
    return f"{user}@{host}:{path}" if user else f"{host}:{path}"


def _remote_path(config: Config, init: dt.datetime, lead_h: int) -> str:
    path = graf_remote_path(config, init, lead_h)
    return path[2:] if path.startswith("~/") else path


def _rsync_command(config: Config, source: str, dest: Path, overwrite: bool) -> list[str]:
    cmd = ["rsync", "--times", f"--partial-dir={_RSYNC_PARTIAL_DIR}", "--protect-args"]
    if overwrite:
        cmd.append("--ignore-times")  # re-check the content even if size and time match
    return [*cmd, "-e", shlex.join(ssh_command(config)), source, str(dest)]


def _scp_command(config: Config, source: str, dest: Path, overwrite: bool) -> list[str]:
    del overwrite  # scp always copies
    _validated_remote(config)
    return ["scp", "-p", *_with_o(_ENFORCED_OPTIONS), *_scp_options(config),
            *_with_o(_DEFAULT_OPTIONS), source, str(dest)]


_BUILDERS: dict[str, Callable[[Config, str, Path, bool], list[str]]] = {
    "rsync": _rsync_command,
    "scp": _scp_command,
}


def _resolve_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        return "rsync" if shutil.which("rsync") else "scp"
    return method


def transfer_command(
    config: Config,
    init: dt.datetime,
    lead_h: int,
    method: str = "rsync",
    overwrite: bool = False,
    dest: Path | None = None,
) -> list[str]:
    """The argument list that copies one GRAF file from the remote archive.

    Parameters
    ----------
    config : Config
        Site configuration; ``[remote]`` gives host, user, directory and ssh options.
    init : datetime
        Initialisation time (UTC).
    lead_h : int
        Lead time in hours.
    method : {"auto", "rsync", "scp"}
        ``"auto"`` picks rsync when installed, else scp.
    overwrite : bool
        For rsync, compare the content even when size and time match.
    dest : Path, optional
        Where the tool writes; default the laptop path. :func:`fetch_graf` passes a
        temporary name for scp.

    Raises
    ------
    ConfigError
        See :func:`ssh_command`.
    ValueError
        If ``method`` is unknown.
    """
    tool = _resolve_method(method)
    remote = _validated_remote(config)
    source = _remote_spec(remote, _remote_path(config, init, lead_h))
    target = dest if dest is not None else graf_laptop_path(config, init, lead_h)
    return _BUILDERS[tool](config, source, target, overwrite)


# --------------------------------------------------------------------------------------
# Running and explaining failures
# --------------------------------------------------------------------------------------

_NOT_FOUND = re.compile(
    r"link_stat .* failed: No such file or directory|change_dir .* failed: No such file"
    r"|^scp: .*: No such file or directory", re.MULTILINE)


def _explain_failure(tool: str, returncode: int, stderr: str, host: str, source: str) -> str:
    """One line that says what went wrong, from the tool's stderr and exit code."""
    code = f"({tool} exit {returncode})"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return (f"host key of {host} has CHANGED since it was stored in known_hosts; do not "
                f"connect until you know why (ask the machine's admins) {code}")
    if "Host key verification failed" in stderr:
        return (f"host key of {host} not in known_hosts; verify it and connect once with ssh "
                f"{code}")
    if _NOT_FOUND.search(stderr):
        return f"remote file not found: {source} {code}"
    if "Could not resolve hostname" in stderr:
        return f"cannot resolve host name {host!r}: check [remote] host {code}"
    if "Connection refused" in stderr:
        return f"connection to {host} refused: is the host and port right? {code}"
    if re.search(r"timed out|Connection timeout", stderr, re.IGNORECASE):
        return f"connection to {host} timed out {code}"
    if "Permission denied" in stderr and "publickey" in stderr.lower():
        return (f"ssh login to {host} failed (Permission denied): check [remote] user and "
                f"the key in ssh_options or your ssh agent {code}")
    if re.search(r"rsync: (command )?not found", stderr):
        return f"rsync is not installed on {host}; use --method scp {code}"
    return f"{tool} from {source} failed: {_key_line(stderr)} {code}"


def _key_line(stderr: str) -> str:
    """The stderr line that names the problem (not rsync's closing summary)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if re.match(r"(rsync|scp|ssh)( \[\w+\])?: ", line) and "Broken pipe" not in line:
            return line
    return lines[-1] if lines else "no error message"


def _run(cmd: list[str], config: Config, source: str) -> None:
    logger.debug("running %s", shlex.join(cmd))
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", check=False)
    except FileNotFoundError:
        raise MissingDependencyError(f"{cmd[0]} is not installed (needed to fetch {source})") from None
    for line in proc.stderr.splitlines():
        logger.debug("%s: %s", cmd[0], line)
    if proc.returncode != 0:
        raise RemoteError(_explain_failure(cmd[0], proc.returncode, proc.stderr,
                                           config.remote.host.strip(), source))


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parents of ``path``; return those created, deepest last."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for directory in reversed(dirs):
        try:
            directory.rmdir()
        except OSError:
            break  # not empty (e.g. an rsync partial file kept for resuming)


def _remove_stale_rsync_temporaries(local: Path, min_age_s: float = 3600.0) -> None:
    """Delete ``.NAME.XXXXXX`` files of rsync runs killed with SIGKILL (older than 1 h)."""
    now = time.time()
    for path in local.parent.glob(f".{glob.escape(local.name)}.??????"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                logger.debug("removed stale rsync temporary %s", path)


def fetch_graf(
    config: Config,
    init: dt.datetime,
    lead_h: int,
    method: str = "auto",
    dry_run: bool = False,
    overwrite: bool = False,
) -> Path | str:
    """Copy one GRAF forecast file from the remote archive into the laptop layout.

    Parameters
    ----------
    config : Config
        Site configuration (``[remote]`` and ``[paths] graf_laptop_dir``).
    init : datetime
        Initialisation time (UTC).
    lead_h : int
        Lead time in hours (the caller validates it against ``[graf]``).
    method : {"auto", "rsync", "scp"}
        Transfer tool; ``"auto"`` is rsync when installed, else scp.
    dry_run : bool
        Return the shell-quoted command instead of running anything. For scp the
        command shows the final name; the real run writes to a temporary name beside
        it and renames.
    overwrite : bool
        Fetch even if the local file exists.

    Returns
    -------
    Path or str
        The local file (fetched or already present), or the command when ``dry_run``.

    Raises
    ------
    ConfigError
        ``[remote]`` incomplete, or ``ssh_options`` unparsable or unsafe.
    MissingDependencyError
        The transfer tool is not installed.
    RemoteError
        The transfer failed: one line naming the cause (unknown or changed host key,
        missing remote file, refused or timed-out connection, failed login) and the
        tool's exit code.
    """
    tool = _resolve_method(method)
    local = graf_laptop_path(config, init, lead_h)
    if local.exists() and not overwrite:  # checked before [remote] so a dry run predicts the real run
        logger.info("%s exists%s (--overwrite to fetch again)", local,
                    "; a real run would skip it" if dry_run else ", skipping")
        return local
    if dry_run:
        return shlex.join(transfer_command(config, init, lead_h, tool, overwrite))
    for program in (tool, "ssh"):
        if shutil.which(program) is None:
            hint = "; try --method scp" if program == "rsync" else ""
            raise MissingDependencyError(f"{program} is not installed (needed to fetch GRAF "
                                         f"files){hint}")
    _transfer(config, init, lead_h, tool, overwrite, local)
    return local


def _transfer(config: Config, init: dt.datetime, lead_h: int, tool: str, overwrite: bool, local: Path) -> None:
    """Run the transfer into ``local`` (scp through a temporary name), then tidy up."""
    source = _remote_spec(config.remote, _remote_path(config, init, lead_h))
    logger.info("fetching %s -> %s (%s)", source, local, tool)
    start = time.monotonic()
    created = _make_parents(local)
    try:
        if tool == "scp":
            with atomic_path(local) as tmp:
                _run(transfer_command(config, init, lead_h, tool, overwrite, dest=tmp), config, source)
        else:
            _run(transfer_command(config, init, lead_h, tool, overwrite), config, source)
            if not local.is_file():
                raise RemoteError(f"rsync reported success but {local} does not exist")
    except BaseException:
        _remove_empty(created)
        raise
    _remove_stale_rsync_temporaries(local)
    remove_stale_temporaries(local.parent)  # of scp runs killed before the rename
    size_mb = local.stat().st_size / 1e6
    elapsed_s = max(time.monotonic() - start, 1e-6)
    logger.info("fetched %s (%.1f MB in %.1f s, %.1f MB/s)", local, size_mb, elapsed_s, size_mb / elapsed_s)
