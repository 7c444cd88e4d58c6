"""The sandbox's parts on this machine's real kernel: syscall tables per
architecture, the seccomp program, the plan and its honest descriptions, and
`apply` in a forked child that then tries what a hostile kernel would.
(The same attempts through RPC against a daemon: test_sandbox_hostile.py.)
"""
import errno
import json
import os
import resource
import socket
import threading

import pytest
from hypothesis import given, strategies as st

from edge_server.daemon.config import ConfigError, parse_args
from edge_server.session import landlock, sandbox, seccomp
from edge_server.session.limits import Limits
from tests.support import hostile_kit as hostile

LIMITS = Limits(address_space=256 << 20, open_files=64, processes=4096, file_size=1 << 20)
LIBSECCOMP_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
                   "armv7l": "arm", "armv8l": "arm", "riscv64": "riscv64"}


@pytest.mark.parametrize("machine", sorted(landlock.SYSCALLS))
def test_landlock_numbers_match_libseccomps_table_for_each_arch(machine):
    names = ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self")
    expected = tuple(seccomp.resolve(n, LIBSECCOMP_ARCH[machine]) for n in names)
    assert landlock.syscall_numbers(machine) == expected


def test_an_unknown_machine_has_no_landlock_rather_than_a_wrong_number():
    assert landlock.syscall_numbers("sparc64") is None


def test_handled_rights_follow_the_uapi_header_per_abi():
    assert landlock.handled_fs(1) == 0x1FFF
    assert landlock.handled_fs(2) == 0x3FFF
    assert landlock.handled_fs(4) == 0x7FFF
    assert landlock.handled_fs(5) == 0xFFFF
    assert (landlock.handled_net(3), landlock.handled_net(4)) == (0, 3)
    assert (landlock.scopes(5), landlock.scopes(6)) == (0, 3)


@given(st.integers(min_value=1, max_value=40))
def test_a_newer_abi_never_handles_fewer_rights(abi):
    assert landlock.handled_fs(abi) & landlock.handled_fs(abi + 1) == landlock.handled_fs(abi)
    assert landlock.FILE_RIGHTS & ~landlock.handled_fs(max(abi, 5)) == 0


def test_the_seccomp_program_denies_what_a_kernel_never_needs():
    flt = seccomp.build(os.getpid())
    assert len(flt.program) % 8 == 0 and len(flt.program) > 8 * len(flt.denied)
    for name in ("ptrace", "bpf", "mount", "kexec_load", "perf_event_open", "socket",
                 "setsid", "io_uring_setup", "unshare"):
        assert name in flt.denied
    assert flt.seccomp_nr == seccomp.resolve("seccomp")
    allowed = seccomp.build(os.getpid(), allow_perf=True)
    assert "perf_event_open" not in allowed.denied and allowed.perf_allowed


def test_libseccomp_knows_the_board_arch_numbers_apart_from_this_one():
    assert seccomp.resolve("seccomp", "x86_64") == 317
    assert seccomp.resolve("seccomp", "aarch64") == 277
    assert seccomp.resolve("fork", "aarch64") is None     # arm64 has only clone
    with pytest.raises(seccomp.SeccompError, match="architecture"):
        seccomp.resolve("seccomp", "pdp11")


def test_descriptions_say_what_was_applied_and_why_not_the_rest():
    off = sandbox.make_plan("off", LIMITS, os.getpid())
    assert off.describe() == "off (--sandbox off)" and off.info() == {
        "mode": "off", "applied": "off (--sandbox off)"}
    no_landlock = sandbox.make_plan("auto", LIMITS, os.getpid(), landlock_abi=0)
    assert no_landlock.describe() == "seccomp only (kernel lacks landlock)"
    full = sandbox.make_plan("auto", LIMITS, os.getpid(), landlock_abi=4)
    assert full.describe() == "landlock v4 + seccomp"
    assert full.info()["limits"]["open_files"] == 64 and full.info()["perf_event_open"] is False
    assert sandbox._describe(0, False, ["kernel lacks landlock", "seccomp unavailable: x"]) \
        == "none: kernel lacks landlock; seccomp unavailable: x"


def test_required_refuses_a_kernel_without_landlock_and_says_what_would_work():
    with pytest.raises(sandbox.SandboxError) as err:
        sandbox.make_plan("required", LIMITS, os.getpid(), landlock_abi=0)
    text = str(err.value)
    assert "kernel lacks landlock" in text and "--sandbox auto" in text
    assert os.uname().release in text
    with pytest.raises(sandbox.SandboxError, match="auto, required or off"):
        sandbox.make_plan("strict", LIMITS, os.getpid())


def test_the_plan_grants_the_python_install_but_not_the_working_directory(tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = sandbox.make_plan("auto", LIMITS, os.getpid(), load_library=())
    assert str(tmp_path) not in plan.read_exec
    assert any(os.path.exists(os.path.join(p, "tvm")) for p in plan.read_exec)
    assert "/" not in plan.read_exec


def in_sandboxed_child(plan, work_dir, attempt, extra_thread=False) -> dict:
    """In a forked child: apply the plan, run attempt(applied) -> dict."""
    def body():
        if extra_thread:
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        try:
            applied = sandbox.apply(plan, str(work_dir))
        except sandbox.SandboxError as err:
            return {"refused": str(err)}
        return dict(attempt(applied), applied=applied.state())
    return hostile.in_child(body)


def errno_of(func):
    try:
        func()
    except OSError as err:
        return err.errno
    except ValueError:          # resource.setrlimit's EPERM
        return errno.EPERM
    return 0


def hostile_attempts(outside_file, outside_dir, work_dir):
    def attempt(applied):
        inside = os.path.join(str(work_dir), "ok")
        return {
            "read_outside": errno_of(lambda: open(outside_file).read()),
            "write_outside": errno_of(lambda: open(os.path.join(outside_dir, "x"), "w").close()),
            "write_inside": errno_of(lambda: open(inside, "w").write("fine")),
            "socket": errno_of(lambda: socket.socket().close()),
            "set_nofile": errno_of(lambda: resource.setrlimit(
                resource.RLIMIT_NOFILE, (32, 32))),
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "cpu_sysfs": errno_of(lambda: open("/sys/devices/system/cpu/online").read()),
            "proc_self": errno_of(lambda: os.listdir("/proc/self/task")),
            "tmpdir": os.environ.get("TMPDIR"),
        }
    return attempt


@pytest.fixture
def places(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("secret")
    return work, outside, secret


def test_a_sandboxed_process_keeps_to_its_work_dir(places):
    work, outside, secret = places
    plan = sandbox.make_plan("auto", LIMITS, os.getpid())
    got = in_sandboxed_child(plan, work, hostile_attempts(secret, outside, work))
    box = got["applied"]
    assert box["applied"] == plan.describe() and box["errors"] == []
    assert got["write_inside"] == 0 and (work / "ok").read_text() == "fine"
    assert (got["cpu_sysfs"], got["proc_self"]) == (0, 0)
    assert got["nofile"] == 64 and got["set_nofile"] != 0
    assert got["tmpdir"] == str(work)
    if plan.landlock_abi:
        assert (got["read_outside"], got["write_outside"]) == (errno.EACCES, errno.EACCES)
        assert not (outside / "x").exists()
    if plan.seccomp_filter is not None:
        assert got["socket"] == errno.EACCES
    assert sum(box["cost_ms"].values()) < 1000      # sanity only; the figure is in bench/


def test_without_landlock_the_session_says_so_and_files_are_not_confined(places):
    """What a vendor kernel without Landlock gets: honest degradation, not a silent skip."""
    work, outside, secret = places
    plan = sandbox.make_plan("auto", LIMITS, os.getpid(), landlock_abi=0)
    got = in_sandboxed_child(plan, work, hostile_attempts(secret, outside, work))
    assert got["applied"]["applied"] == "seccomp only (kernel lacks landlock)"
    assert got["applied"]["landlock_abi"] == 0
    assert got["read_outside"] == 0            # nothing stops it, and the report says so
    assert got["socket"] == errno.EACCES       # seccomp still holds


def test_threads_that_exist_before_the_sandbox_make_landlock_refuse_honestly(places):
    work, outside, secret = places
    plan = sandbox.make_plan("auto", LIMITS, os.getpid())
    if not plan.landlock_abi:
        pytest.fail("this test needs a kernel with Landlock: %s" % plan.describe())
    got = in_sandboxed_child(plan, work, hostile_attempts(secret, outside, work),
                             extra_thread=True)
    assert got["applied"]["landlock_abi"] == 0
    assert "threads already ran" in got["applied"]["applied"]
    required = sandbox.Plan("required", plan.landlock_abi, plan.seccomp_filter, LIMITS,
                            plan.read_exec, plan.read_only, plan.read_write)
    refused = in_sandboxed_child(required, work, hostile_attempts(secret, outside, work),
                                 extra_thread=True)
    assert "--sandbox required" in refused["refused"]


def test_the_grant_follows_the_work_dir_through_a_rename(places):
    """The daemon renames a spare's dir to the session's name after the spare
    sandboxed itself: the grant (an inode) must follow."""
    work, outside, _ = places
    plan = sandbox.make_plan("auto", LIMITS, os.getpid())
    moved = outside.parent / "s1"
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def attempt(applied):
        os.write(ready_w, b"r")
        os.read(go_r, 1)             # the parent has renamed the dir
        return {"grants_new": applied.grants(str(moved)),
                "grants_other": applied.grants(str(outside)),
                "write_moved": errno_of(lambda: open(os.path.join(moved, "f"), "w").close())}
    result = {}
    waiter = threading.Thread(target=lambda: result.update(
        in_sandboxed_child(plan, work, attempt)))
    waiter.start()
    os.read(ready_r, 1)
    os.rename(str(work), str(moved))
    os.write(go_w, b"g")
    waiter.join(30)
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)
    assert result["grants_new"] is True and result["grants_other"] is False, result
    assert result["write_moved"] == 0 and (moved / "f").exists()


def test_off_applies_nothing(places):
    work, outside, secret = places
    got = in_sandboxed_child(sandbox.make_plan("off", LIMITS, os.getpid()), work,
                             hostile_attempts(secret, outside, work))
    assert got["applied"]["applied"] == "off (--sandbox off)"
    assert got["read_outside"] == 0 and got["socket"] == 0


def test_sandbox_flags_parse_and_bad_ones_say_what_would_work():
    config = parse_args(["--max-disk", "2G"])
    assert config.sandbox == "auto" and config.session_limits.file_size == 2 << 30
    assert config.session_limits.open_files == 1024 and config.allow_perf is False
    config = parse_args(["--sandbox", "required", "--session-max-memory", "512M",
                         "--session-max-file-size", "64M", "--allow-perf"])
    assert (config.sandbox, config.session_limits.address_space,
            config.session_limits.file_size, config.allow_perf) == (
        "required", 512 << 20, 64 << 20, True)
    with pytest.raises(ConfigError, match="use auto .* required .* or off"):
        parse_args(["--sandbox", "strict"])
    with pytest.raises(ConfigError, match="at least 16"):
        parse_args(["--session-max-files", "3"])
    with pytest.raises(ConfigError, match="--session-max-memory 'lots' is not a size"):
        parse_args(["--session-max-memory", "lots"])


def test_a_work_dir_renamed_before_the_sandbox_applies_nothing(places):
    """The daemon may rename a spare's dir while the spare starts to prepare:
    the spare must learn that before anything is applied, and set up again."""
    work, _, _ = places
    plan = sandbox.make_plan("auto", LIMITS, os.getpid())

    def attempt(applied):
        return {}
    gone = work.parent / "renamed-away"
    got = in_sandboxed_child(plan, gone, attempt)
    assert "is gone; nothing applied" in got["refused"]
    def body():
        try:
            sandbox.apply(plan, str(gone))
        except sandbox.WorkDirMoved:
            pass
        with open("/proc/self/status") as f:
            return {"nnp": [line for line in f if line.startswith("NoNewPrivs")][0].split()[1]}
    nnp = hostile.in_child(body)["nnp"]
    assert nnp == "0"


def test_under_a_filter_that_blocks_landlock_and_seccomp_the_report_says_why(places):
    """A daemon under systemd 252 with only @system-service: the plan names the
    filter (not the kernel), and seccomp still goes on through prctl."""
    work, outside, secret = places
    outer = hostile.systemd_252_like_filter()

    def body():
        seccomp.set_no_new_privs()
        seccomp.load(outer)
        plan = sandbox.make_plan("auto", LIMITS, os.getppid())
        applied = sandbox.apply(plan, str(work))
        return dict(hostile_attempts(secret, outside, work)(applied),
                    plan=plan.describe(), applied=applied.state())
    got = hostile.in_child(body)
    assert got["plan"].startswith("seccomp only (landlock blocked by a syscall filter"), got
    assert got["applied"]["seccomp"] is True and got["socket"] == errno.EACCES, got
    assert got["read_outside"] == 0     # honest: files are not confined there


def test_garbage_in_statm_leaves_only_the_address_space_limit_out(places, monkeypatch):
    work, _, _ = places
    junk = work / "statm"           # readable under Landlock: the work dir
    junk.write_text("not pages\n")
    monkeypatch.setattr(sandbox.limits_mod, "STATM", str(junk))
    got = in_sandboxed_child(sandbox.make_plan("auto", LIMITS, os.getpid()), work,
                             lambda applied: {})
    box = got["applied"]
    assert any("statm" in e and "not pages" in e for e in box["errors"]), box
    assert "address_space" not in box["limits"] and box["limits"]["open_files"] == 64


def test_with_another_thread_already_there_capabilities_are_kept_so_it_can_be_pinned(places):
    """What qemu-user's extra thread meant on the emulated board: a capability drop
    in one thread made pinning the other fail with EPERM (cap_safe_nice)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root: capabilities are only dropped for a root daemon")
    work, _, _ = places
    plan = sandbox.make_plan("auto", LIMITS, os.getpid())

    def pin_every_thread(applied):
        cpu = min(os.sched_getaffinity(0))
        results = {}
        for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
            results[tid] = errno_of(lambda: os.sched_setaffinity(tid, {cpu}))
        return {"pinned": sorted(results.values())}

    alone = in_sandboxed_child(plan, work, pin_every_thread)
    assert alone["applied"]["capabilities_dropped"] is True
    shared = in_sandboxed_child(plan, work, pin_every_thread, extra_thread=True)
    assert shared["applied"]["capabilities_dropped"] is False
    assert any("capabilities: kept; 2 threads" in e for e in shared["applied"]["errors"])
    assert "capabilities: kept" in shared["applied"]["applied"]
    assert shared["pinned"] == [0, 0]          # both threads pinned: no EPERM
