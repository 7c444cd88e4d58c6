"""Command-line validation: every mistake is one line and a non-zero exit before anything binds."""
import ipaddress
import socket
import subprocess
import sys

import pytest

from tests.support import procs
from edge_server.daemon.config import (OPTIONS, Config, ConfigError, build_parser,
                                       check_default_mode, parse_address, parse_args, parse_size)
from edge_server.board.topology import probe

RK3399 = str(procs.FIXTURES / "rk3399")


def test_defaults_match_the_stock_server(tmp_path):
    config = parse_args(["--work-root", str(tmp_path)])
    assert (config.host, config.port, config.port_end) == ("0.0.0.0", 9090, 9199)
    assert config.tracker is None and config.key == ""
    assert config.default_mode == "all"
    assert config.allow == () and config.allows("203.0.113.9")
    assert config.work_root == str(tmp_path)


def test_all_flags(tmp_path):
    lib = tmp_path / "libx.so"
    lib.write_bytes(b"")
    config = parse_args([
        "--host", "127.0.0.1", "--port", "9100", "--port-end", "9110",
        "--tracker", "10.0.0.2:9190", "--key", "rk3399.v2_a-b", "--custom-addr", "10.0.0.7",
        "--load-library", str(lib), "--silent", "--no-fork", "--default-mode", "big:2",
        "--root", RK3399, "--allow", "10.0.0.0/24", "--allow", "127.0.0.1",
        "--session-timeout-cap", "600", "--grace", "3", "--handshake-timeout", "2",
        "--max-upload", "16M", "--max-disk", "2G", "--work-root", str(tmp_path), "--verbose"])
    assert config.tracker == ("10.0.0.2", 9190)
    assert config.key == "rk3399.v2_a-b"
    assert config.load_library == (str(lib),)
    assert config.no_fork and config.silent and config.verbose
    assert config.root == RK3399
    assert config.session_timeout_cap == 600 and config.grace == 3
    assert config.handshake_timeout == 2
    assert config.max_upload_bytes == 16 << 20 and config.max_disk_bytes == 2 << 30
    assert config.allows("10.0.0.200") and config.allows("127.0.0.1")
    assert config.allows("::ffff:10.0.0.5")            # IPv4-mapped peer on a :: listener
    assert not config.allows("10.0.1.1") and not config.allows("::1")


def test_one_table_gives_the_flags_the_help_and_the_config_defaults(tmp_path):
    parsed = parse_args(["--work-root", str(tmp_path)])
    built = Config(work_root=str(tmp_path))
    assert parsed == built
    help_text = " ".join(build_parser().format_help().split())
    for option in OPTIONS:
        assert option.flag in help_text
        assert hasattr(built, option.field)
    assert "(default 9090)" in help_text and "(default 10)" in help_text
    assert "(default 256M)" in help_text and built.max_upload_bytes == 256 << 20
    fields = [o.field for o in OPTIONS]
    assert len(fields) == len(set(fields))


def test_config_is_frozen():
    with pytest.raises(Exception):
        Config().port = 1


def test_work_root_defaults_to_systemd_directories():
    assert parse_args([], {"RUNTIME_DIRECTORY": "/run/edge-server:/run/other"}).work_root \
        == "/run/edge-server"
    assert parse_args([], {"STATE_DIRECTORY": "/var/lib/edge-server"}).work_root \
        == "/var/lib/edge-server"
    assert "edge-server-" in parse_args([], {}).work_root


@pytest.mark.parametrize("text,addr", [
    ("10.0.0.2:9190", ("10.0.0.2", 9190)),
    ("tracker.lab:9190", ("tracker.lab", 9190)),
    ("[::1]:9190", ("::1", 9190)),
    (" 127.0.0.1:1 ", ("127.0.0.1", 1)),
])
def test_tracker_addresses(text, addr):
    assert parse_address(text) == addr


@pytest.mark.parametrize("argv,words", [
    (["--tracker", "10.0.0.2"], "HOST:PORT"),
    (["--tracker", ":9190", "--key", "k"], "HOST:PORT"),
    (["--tracker", "10.0.0.2:http", "--key", "k"], "not a number"),
    (["--tracker", "10.0.0.2:70000", "--key", "k"], "outside 1..65535"),
    (["--tracker", "10.0.0.2:9190"], "needs --key"),
    (["--key", "rk 3399"], "cannot contain whitespace"),
    (["--key", "rk3399\n"], "cannot contain whitespace"),
    (["--port", "0"], "outside 1..65535"),
    (["--port", "9100", "--port-end", "9100"], "must be above"),
    (["--port", "abc"], "invalid int"),
    (["--bogus"], "unrecognized arguments"),
    (["--default-mode", " "], "empty"),
    (["--root", "/nonexistent/board"], "not a directory"),
    (["--allow", "10.0.0.0/33"], "not a network"),
    (["--allow", "lab"], "not a network"),
    (["--grace", "-1"], "positive number"),
    (["--handshake-timeout", "0"], "positive number"),
    (["--session-timeout-cap", "nan"], "positive number"),
    (["--max-upload", "lots"], "not a size"),
    (["--max-disk", "0"], "at least 1 byte"),
    (["--load-library", "/nonexistent/libfoo.so"], "no such file"),
    (["--custom-addr", "a b"], "not a host name"),
])
def test_bad_flags_say_what_is_wrong(argv, words):
    with pytest.raises(ConfigError) as err:
        parse_args(argv)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text,value", [("1", 1), ("256M", 256 << 20), ("1G", 1 << 30),
                                        ("1.5k", 1536), ("2GiB", 2 << 30), ("10mb", 10 << 20)])
def test_sizes(text, value):
    assert parse_size(text, "--max-upload") == value


def test_default_mode_is_checked_against_the_board():
    topology = probe(RK3399)
    assert check_default_mode(parse_args(["--default-mode", "big:2"]), topology) == "big:2"
    with pytest.raises(ConfigError) as err:
        check_default_mode(parse_args(["--default-mode", "big:6"]), topology)
    message = str(err.value)
    assert message.startswith("--default-mode:") and "big" in message and "\n" not in message


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((procs.HOST, port)) == 0


@pytest.mark.parametrize("args,words", [
    (["--tracker", "127.0.0.1"], "HOST:PORT"),
    (["--tracker", "127.0.0.1:9190"], "needs --key"),
    (["--key", "bad key"], "cannot contain whitespace"),
    (["--root", RK3399, "--default-mode", "little:9"], "--default-mode"),
    (["--root", RK3399, "--default-mode", "prime"], "--default-mode"),
    (["--default-mode", "cpus:999"], "--default-mode"),
    (["--allow", "nonsense"], "not a network"),
    (["--no-such-flag"], "unrecognized"),
])
def test_cli_errors_are_one_line_and_nothing_binds(tmp_path, args, words):
    port = procs.free_port()
    argv = procs.edge_server_argv("--host", procs.HOST, "--port", port, "--port-end", port + 1,
                                  "--work-root", tmp_path / "work", *args)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edge-server: error:") and words in lines[0]
    assert not _listening(port)
    assert not (tmp_path / "work").exists()   # nothing created either


def test_no_free_port_is_one_line_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind((procs.HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(procs.edge_server_argv(
            "--host", procs.HOST, "--port", port, "--port-end", port + 1, "--key", "k",
            "--work-root", tmp_path / "work"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "edge-server: error: cannot bind to any port in [%d, %d) on %s: all in use; pass a free "
        "range with --port/--port-end" % (port, port + 1, procs.HOST))


def test_help_exits_zero_and_lists_the_stock_flags():
    proc = subprocess.run(procs.edge_server_argv("--help"), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for flag in ("--host", "--port", "--port-end", "--tracker", "--key", "--custom-addr",
                 "--load-library", "--silent", "--no-fork", "--default-mode", "--root",
                 "--allow", "--grace", "--handshake-timeout", "--work-root"):
        assert flag in proc.stdout


def test_every_key_stock_takes_is_taken_and_a_colon_warned_about():
    from edge_server.daemon.config import key_warning
    for key in ("rk3399", "lab:rk3399", "rk3399/big", "ключ"):
        assert parse_args(["--key", key]).key == key
    assert key_warning("rk3399.v2_a-b") is None and key_warning("") is None
    warning = key_warning("lab:rk3399")
    assert "MetaSchedule's RPCConfig.count_num_servers" in warning
    assert "e.g. lab-rk3399 works everywhere" in warning


def test_every_flag_of_the_stock_server_is_a_flag_here():
    """`--help` says superset: check it against the installed TVM's rpc_server."""
    import re
    import tvm.exec.rpc_server as stock
    with open(stock.__file__) as source:
        stock_flags = set(re.findall(r'add_argument\(\s*"(--[a-z-]+)"', source.read()))
    assert {"--host", "--port", "--through-proxy", "--tracker", "--key"} <= stock_flags
    ours = {a.option_strings[0] for a in build_parser()._actions if a.option_strings}
    assert stock_flags <= ours, stock_flags - ours
    assert "superset" in build_parser().description
