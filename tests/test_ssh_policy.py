"""The ssh option allow-list (pqpf.ssh_policy) as copy_graf_to_laptop uses it: what is
refused without contacting anything, and, against the real loopback sshd, that no allowed
option (alone or all together) lets an unknown host key through (issue 11 item 5)."""

from __future__ import annotations

import pytest
from test_transfer import INIT_NEW, PORT, _files_below, _put_remote, _ssh_options, _write_config

from pqpf.config import load_config
from pqpf.errors import ConfigError, RemoteError
from pqpf.ssh_policy import ALLOWED_OPTIONS
from pqpf.stages.fetch import fetch_graf, ssh_command, transfer_command


@pytest.mark.parametrize("options", [
    "-o StrictHostKeyChecking=no",
    "-oStrictHostKeyChecking=accept-new",
    "-o 'StrictHostKeyChecking off'",
    "-4o stricthostkeychecking=NO",
    "-o StrictHostKeyChecking=yes",          # pqpf sets it; the config must not pretend to
    "-p 22 -o UserKnownHostsFile=/dev/null",
    "-o UserKnownHostsFile=/dev/stdin",
    "-o 'UserKnownHostsFile /tmp/known_hosts /dev/null'",
    "-o UserKnownHostsFile=none",
    "-o GlobalKnownHostsFile=/tmp/their_keys",
    "-o 'KnownHostsCommand=/bin/cat /tmp/their_keys'",
    "-o VerifyHostKeyDNS=yes",
    "-o HostKeyAlias=other",
    "-o CheckHostIP=yes",
    "-o UpdateHostKeys=yes",
    "-o BatchMode=no",
])
def test_options_that_change_host_key_checking_are_refused(tmp_path, options):
    config = load_config(_write_config(tmp_path, options))
    with pytest.raises(ConfigError) as exc:
        fetch_graf(config, INIT_NEW, 12, dry_run=True)
    message = str(exc.value)
    assert message.startswith(f"{config.source}: [remote] ssh_options: -o ") and "\n" not in message
    assert "host key checking" in message or "real known_hosts file" in message or "one file" in message


@pytest.mark.parametrize("options, words", [
    ("-F /tmp/ssh_config", "ssh option -F is not allowed"),
    ("-J jumphost", "ssh option -J is not allowed"),
    ("-o ProxyJump=jumphost", "-o ProxyJump=jumphost is not allowed"),
    ("-o 'ProxyCommand=nc %h %p'", "-o ProxyCommand=nc %h %p is not allowed"),
    ("-o LocalCommand=touch/x -o PermitLocalCommand=yes", "-o LocalCommand=touch/x is not allowed"),
    ("-o ControlPath=/tmp/master.sock", "is not allowed"),
    ("-o ControlMaster=auto", "is not allowed"),
    ("-o HostName=elsewhere", "is not allowed"),
    ("-o Include=/tmp/x", "is not allowed"),
    ("-A", "ssh option -A is not allowed"),
    ("-o ForwardAgent=yes", "is not allowed"),
    ("-X", "ssh option -X is not allowed"),
    ("-L 8080:localhost:80", "ssh option -L is not allowed"),
    ("-o Port=0", "Port must be a whole number from 1 to 65535"),
    ("-p 2222x", "Port must be a whole number from 1 to 65535"),
    ("-o ConnectTimeout=-1", "ConnectTimeout must be a whole number"),
    ("-i -oProxyCommand=x", "IdentityFile must be one file name"),
    ("-o 'IdentityFile=/keys/a key'", "IdentityFile must be one file name"),
    ("-l -oProxyCommand=x", "User must be a login name"),
    ("-o User=a/b", "User must be a login name"),
    ("-o Compression=maybe", "Compression must be one of yes, no"),
    ("-o Port", "-o Port needs a value"),
], ids=lambda v: v if len(v) < 30 else v[:30])
def test_anything_outside_the_allow_list_is_refused_in_one_line(tmp_path, options, words):
    config = load_config(_write_config(tmp_path, options))
    for method in ("rsync", "scp"):
        with pytest.raises(ConfigError) as exc:
            transfer_command(config, INIT_NEW, 12, method=method)
        message = str(exc.value)
        assert message.startswith(f"{config.source}: [remote] ssh_options: ") and "\n" not in message
        assert words in message, message


@pytest.mark.parametrize("key, values", [
    ("host", {"host": "-oProxyCommand=touch_x"}), ("host", {"host": "hpc/../evil"}),
    ("host", {"host": "evil@hpc"}), ("host", {"host": "'hpc x'"}),
    ("user", {"user": "-oProxyCommand=x"}), ("user", {"user": "a/b"}), ("user", {"user": "'a b'"}),
])
def test_host_or_user_that_could_be_an_option_or_a_path_is_refused(tmp_path, key, values):
    config = load_config(_write_config(tmp_path, "", **values))
    with pytest.raises(ConfigError, match=rf"^{config.source}: \[remote\] {key} must be "):
        fetch_graf(config, INIT_NEW, 12, dry_run=True)


def test_allowed_options_pass_with_canonical_keys(tmp_path):
    options = ("-4 -C -q -v -p 2222 -i ~/.ssh/id_hpc -l alice -o port=2222 -o IdentityFile=/k "
               "-o CertificateFile=/k-cert.pub -o IdentitiesOnly=yes -o User=alice "
               "-o UserKnownHostsFile=~/.ssh/known_hosts_hpc -o ConnectTimeout=10 "
               "-o ConnectionAttempts=2 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 "
               "-o TCPKeepAlive=no -o Compression=yes -o AddressFamily=inet -o LogLevel=ERROR "
               "-o PreferredAuthentications=publickey,keyboard-interactive -o GSSAPIAuthentication=no")
    config = load_config(_write_config(tmp_path, options, user=""))
    cmd = ssh_command(config)
    assert "Port=2222" in cmd and "GSSAPIAuthentication=no" in cmd and "~/.ssh/id_hpc" in cmd
    scp = transfer_command(config, INIT_NEW, 12, method="scp")
    assert "-P" not in scp and ["-o", "User=alice"] == scp[scp.index("User=alice") - 1:scp.index("User=alice") + 1]



# One example of each allowed option (pqpf.ssh_policy.ALLOWED_OPTIONS and the letters).
_EVERY_ALLOWED = [
    "-4", "-C", "-q", "-v", "-6", f"-p {PORT}", "-l root", "-o Port={port}", "-o IdentityFile={key}",
    "-o CertificateFile={key}-cert.pub", "-o IdentitiesOnly=yes", "-o User=root",
    "-o UserKnownHostsFile={known_hosts}", "-o ConnectTimeout=10", "-o ConnectionAttempts=1",
    "-o ServerAliveInterval=5", "-o ServerAliveCountMax=2", "-o TCPKeepAlive=yes", "-o Compression=yes",
    "-o AddressFamily=inet", "-o LogLevel=QUIET", "-o PreferredAuthentications=publickey",
    "-o GSSAPIAuthentication=no",
]
_SILENT = ("-q", "-6", "-o LogLevel=QUIET")  # ssh says nothing (or fails before the key)


def _refused_without_learning(config, known_hosts, method, option):
    with pytest.raises(RemoteError) as exc:
        fetch_graf(config, INIT_NEW, 12, method=method)
    message = str(exc.value)
    assert "\n" not in message and f"({method} exit " in message
    if not any(quiet in option for quiet in _SILENT):
        assert message.startswith("host key of 127.0.0.1 not in known_hosts"), message
    assert known_hosts.read_bytes() == b""
    assert _files_below(config.paths.graf_laptop_dir) == []


@pytest.mark.sshd
@pytest.mark.parametrize("option", _EVERY_ALLOWED)
def test_unknown_host_key_is_refused_with_each_allowed_option(sshd_dir, tmp_path, option):
    assert {o.split("=")[0][3:] for o in _EVERY_ALLOWED if o.startswith("-o ")} == set(ALLOWED_OPTIONS)
    empty = tmp_path / "fresh_known_hosts"
    empty.write_bytes(b"")
    option = option.format(port=PORT, key=sshd_dir / "id_ed25519", known_hosts=empty)
    config = load_config(_write_config(tmp_path, f"{_ssh_options(sshd_dir, empty)} {option}"))
    _put_remote(config, INIT_NEW, 12)
    _refused_without_learning(config, empty, "rsync", option)


@pytest.mark.sshd
@pytest.mark.parametrize("method", ["rsync", "scp"])
def test_unknown_host_key_is_refused_with_all_allowed_options_at_once(sshd_dir, tmp_path, method):
    empty = tmp_path / "fresh_known_hosts"
    empty.write_bytes(b"")
    everything = " ".join(o for o in _EVERY_ALLOWED if o not in _SILENT)
    everything = everything.format(port=PORT, key=sshd_dir / "id_ed25519", known_hosts=empty)
    config = load_config(_write_config(tmp_path, f"{_ssh_options(sshd_dir, empty)} {everything}"))
    _put_remote(config, INIT_NEW, 12)
    _refused_without_learning(config, empty, method, everything)
    # and the same options with the host's key known fetch the file
    known = tmp_path / "known_hosts"
    known.write_bytes((sshd_dir / "known_hosts").read_bytes())
    config = load_config(_write_config(tmp_path, f"{_ssh_options(sshd_dir, known)} "
                                                 f"{everything.replace(str(empty), str(known))}"))
    assert fetch_graf(config, INIT_NEW, 12, method=method).is_file()


@pytest.mark.sshd
@pytest.mark.parametrize("options", [
    "-o \"KnownHostsCommand=/bin/sh -c 'ssh-keyscan -p {port} 127.0.0.1 2>/dev/null; true'\"",
    "-F {ssh_config}",
])
def test_configuration_cannot_make_an_unknown_host_key_known(sshd_dir, tmp_path, options):
    """Issue 11 item 5: with the deny-list, a KnownHostsCommand that trusts whatever key
    the server shows (or the same in a file given with -F) fetched from an unverified host."""
    empty = tmp_path / "fresh_known_hosts"
    empty.write_bytes(b"")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host *\n  KnownHostsCommand /bin/sh -c 'ssh-keyscan -p {PORT} 127.0.0.1 "
                          "2>/dev/null; true'\n")
    options = options.format(port=PORT, ssh_config=ssh_config)
    config = load_config(_write_config(tmp_path, f"{_ssh_options(sshd_dir, empty)} {options}"))
    _put_remote(config, INIT_NEW, 12)
    with pytest.raises(ConfigError, match=rf"^{config.source}: \[remote\] ssh_options: "):
        fetch_graf(config, INIT_NEW, 12, method="rsync")
    assert _files_below(config.paths.graf_laptop_dir) == []
