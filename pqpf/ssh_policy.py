"""Which ssh options the ``[remote] ssh_options`` setting may pass: an allow-list.

pqpf promises that an unknown or changed host key is never accepted. A deny-list of the
options that weaken checking cannot keep that promise: ssh has many ways to make a key
"known" (``-F`` with another configuration, ``KnownHostsCommand``, ``GlobalKnownHostsFile``,
``ProxyCommand``, ``ControlPath`` to an existing connection, ``VerifyHostKeyDNS``, ...), and
new ones arrive with new OpenSSH releases. So only the options below pass, each with a
checked value; everything else is refused with one line naming the configuration key.

==========================  ==================================================================
option                      why a user needs it
==========================  ==================================================================
``-p N``, ``Port``          the HPC login node listens on another port
``-i F``, ``IdentityFile``  the key to log in with
``CertificateFile``         sites that sign user keys with an ssh CA
``IdentitiesOnly``          offer only that key (else "Too many authentication failures")
``-l U``, ``User``          the login name (also ``[remote] user``)
``UserKnownHostsFile``      a known_hosts file of its own (a real file: not ``/dev/null``,
                            no device, not ``none``, one path)
``ConnectTimeout``,         give up on an unreachable host; detect a dead connection
``ConnectionAttempts``,
``ServerAliveInterval``,
``ServerAliveCountMax``,
``TCPKeepAlive``
``-C``, ``Compression``     slow links
``-4``, ``-6``,             force IPv4 or IPv6
``AddressFamily``
``-q``, ``-v``, ``LogLevel``  quieter or more verbose diagnostics
``PreferredAuthentications``,  skip authentication methods that stall (Kerberos sites)
``GSSAPIAuthentication``
==========================  ==================================================================

Not allowed, among others: ``-F``, ``-J``/``ProxyJump`` (the jump connection would not get
pqpf's host-key options; put the jump in ``~/.ssh/config`` and name that alias as
``[remote] host``), ``ProxyCommand``, ``LocalCommand``, ``KnownHostsCommand``,
``GlobalKnownHostsFile``, ``StrictHostKeyChecking`` (pqpf sets it), ``CheckHostIP``,
``UpdateHostKeys``, ``VerifyHostKeyDNS``, ``HostKeyAlias``, ``HostName``, ``Control*``,
agent and X11 forwarding.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from pqpf.errors import ConfigError

__all__ = ["ALLOWED_OPTIONS", "ssh_option_pairs", "check_host", "check_user"]

# ssh's option letters (OpenSSH 9 getopt string), to split "-4o Key=v" as ssh would.
_SSH_ARG_LETTERS = set("bceilmopBDEFIJLOPQRSwW")
_SSH_FLAG_LETTERS = set("1246afgknqstvxACGKMNTVXYy")
# The letters allowed: flags, and letters taking a value -> the -o key they stand for.
_ALLOWED_FLAGS = set("46Cqv")
_LETTER_AS_KEY = {"p": "Port", "i": "IdentityFile", "l": "User"}
# Options that would change host key checking get their own explanation.
_HOST_KEY_OPTIONS = {
    "stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile", "knownhostscommand",
    "checkhostip", "updatehostkeys", "verifyhostkeydns", "hostkeyalias", "hashknownhosts",
    "nohostauthenticationforlocalhost", "batchmode",
}
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.,:@%+=~/${}-]+")


def _integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value.isdigit() or not low <= int(value) <= high:
            return f"must be a whole number from {low} to {high}"
        return None
    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.lower() not in {c.lower() for c in choices}:
            return f"must be one of {', '.join(choices)}"
        return None
    return check


def _local_file(value: str) -> str | None:
    if value.startswith("-") or not _SAFE_TEXT.fullmatch(value):
        return "must be one file name (no spaces, quotes or leading '-')"
    return None


def _known_hosts_file(value: str) -> str | None:
    problem = _local_file(value)
    if problem:
        return problem
    path = Path(value).expanduser()
    if value.lower() == "none" or str(path).startswith("/dev/") or (path.exists() and not path.is_file()):
        return "must be a real known_hosts file (not /dev/null, a device or none)"
    return None


def _user_value(value: str) -> str | None:
    try:
        check_user(value, "")
    except ConfigError:
        return "must be a login name (no '-' first, no '/', '@' or spaces)"
    return None


def _methods(value: str) -> str | None:
    known = {"publickey", "keyboard-interactive", "password", "gssapi-with-mic", "hostbased"}
    if not set(value.split(",")) <= known:
        return f"must be a comma-separated list of {', '.join(sorted(known))}"
    return None


_YES_NO = _one_of("yes", "no")
#: Allowed ``-o`` keys (canonical spelling) and the check of their value.
ALLOWED_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "Port": _integer(1, 65535),
    "IdentityFile": _local_file,
    "CertificateFile": _local_file,
    "IdentitiesOnly": _YES_NO,
    "User": _user_value,
    "UserKnownHostsFile": _known_hosts_file,
    "ConnectTimeout": _integer(1, 3600),
    "ConnectionAttempts": _integer(1, 10),
    "ServerAliveInterval": _integer(0, 3600),
    "ServerAliveCountMax": _integer(1, 100),
    "TCPKeepAlive": _YES_NO,
    "Compression": _YES_NO,
    "AddressFamily": _one_of("any", "inet", "inet6"),
    "LogLevel": _one_of("QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2",
                        "DEBUG3"),
    "PreferredAuthentications": _methods,
    "GSSAPIAuthentication": _YES_NO,
}
_BY_LOWER = {key.lower(): key for key in ALLOWED_OPTIONS}


def _split_tokens(text: str, where: str) -> list[tuple[str, str | None]]:
    """Split ``ssh_options`` into ``(letter, value)`` pairs the way ssh's getopt does."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot split {text!r} ({exc})") from None
    pairs: list[tuple[str, str | None]] = []
    k = 0
    while k < len(tokens):
        token = tokens[k]
        if not token.startswith("-") or token == "-":
            raise ConfigError(f"{where}: expected only ssh options, got {token!r}")
        j = 1
        while j < len(token):
            letter = token[j]
            if letter in _SSH_ARG_LETTERS:
                value = token[j + 1:]
                if not value:
                    k += 1
                    if k >= len(tokens):
                        raise ConfigError(f"{where}: ssh option -{letter} needs a value")
                    value = tokens[k]
                pairs.append((letter, value))
                break
            if letter not in _SSH_FLAG_LETTERS:
                raise ConfigError(f"{where}: unknown ssh option -{letter} in {text!r}")
            pairs.append((letter, None))
            j += 1
        k += 1
    return pairs


def _split_config_option(value: str) -> tuple[str, str]:
    """``"Key=value"`` or ``"Key value"`` -> (key as written, value)."""
    parts = re.split(r"\s*=\s*|\s+", value.strip(), maxsplit=1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _allowed_names() -> str:
    return "-4 -6 -C -q -v -p -i -l, -o " + " ".join(ALLOWED_OPTIONS)


def _check_option(key: str, value: str, shown: str, where: str) -> str:
    """The canonical key of an allowed ``-o`` option; ConfigError otherwise."""
    canonical = _BY_LOWER.get(key.lower())
    if canonical is None:
        if key.lower() in _HOST_KEY_OPTIONS:
            raise ConfigError(f"{where}: {shown} would change host key checking, which pqpf "
                              "always does itself against known_hosts (not allowed)")
        raise ConfigError(f"{where}: {shown} is not allowed (allowed: {_allowed_names()})")
    if not value:
        raise ConfigError(f"{where}: {shown} needs a value")
    problem = ALLOWED_OPTIONS[canonical](value)
    if problem:
        raise ConfigError(f"{where}: {shown}: {canonical} {problem}")
    return canonical


def ssh_option_pairs(text: str, where: str) -> list[tuple[str, str | None]]:
    """The user's ``ssh_options`` as ``(letter, value)`` pairs, every one allowed.

    Letters with an ``-o`` equivalent keep their letter; ``-o`` values are rewritten as
    ``Key=value`` with the canonical key.

    Raises
    ------
    ConfigError
        One line naming ``where`` (the file and ``[remote] ssh_options``) and the option.
    """
    out: list[tuple[str, str | None]] = []
    for letter, value in _split_tokens(text, where):
        if value is None:
            if letter not in _ALLOWED_FLAGS:
                raise ConfigError(f"{where}: ssh option -{letter} is not allowed "
                                  f"(allowed: {_allowed_names()})")
            out.append((letter, None))
        elif letter == "o":
            key, val = _split_config_option(value)
            out.append(("o", f"{_check_option(key, val, f'-o {value}', where)}={val}"))
        elif letter in _LETTER_AS_KEY:
            _check_option(_LETTER_AS_KEY[letter], value, f"-{letter} {value}", where)
            out.append((letter, value))
        else:
            raise ConfigError(f"{where}: ssh option -{letter} is not allowed (allowed: {_allowed_names()})")
    return out


def check_host(host: str, where: str) -> str:
    """``host`` if it can only be a host name, alias or address (never an option or path)."""
    if (not host or host.startswith("-") or "/" in host or "@" in host
            or not re.fullmatch(r"[A-Za-z0-9_.:%\[\]-]+", host)):
        raise ConfigError(f"{where} must be a host name, ~/.ssh/config alias or address (no '-' "
                          f"first, no '/', '@' or spaces), got {host!r}")
    return host


def check_user(user: str, where: str) -> str:
    """``user`` if it can only be a login name (empty: ssh's default)."""
    if user and (user.startswith("-") or not re.fullmatch(r"[A-Za-z0-9_.$-]+", user)):
        raise ConfigError(f"{where} must be a login name (no '-' first, no '/', '@' or spaces), "
                          f"got {user!r}")
    return user
