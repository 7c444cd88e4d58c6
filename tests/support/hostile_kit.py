"""Hostile kernels for the sandbox suite (tests/edge_server/session/test_sandbox_hostile.py).

Each is a shared library whose constructor makes one attempt to escape its
session when the session load_module()s it, then writes what happened to
"result" in the session's work dir (its working directory) for the client to
download. Loading then fails (it is no TVM module): that error is expected,
the session stays up. Every attempt reports the errno it got, so the test
asserts the kernel's answer, and then checks from outside that nothing
escaped (files, listener, processes).
"""
import errno
import os
import subprocess
import sys
from pathlib import Path

HOSTILE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void result(const char *text) {
  FILE *f = fopen("result", "w");
  if (f) { fputs(text, f); fclose(f); }
}

static int try_read(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -errno;
  ssize_t got = read(fd, buf, n - 1);
  close(fd);
  buf[got > 0 ? got : 0] = 0;
  return 0;
}

__attribute__((constructor)) static void edge_hostile(void) {
  char out[4096] = {0}, buf[1024] = {0};
#if defined(READ_SECRET)
  int rc = try_read(SECRET, buf, sizeof buf);
  snprintf(out, sizeof out, "rc=%d data=%s", rc, buf);
#elif defined(WRITE_OUTSIDE)
  int fd = open(OUTSIDE, O_CREAT | O_WRONLY, 0600);
  snprintf(out, sizeof out, "rc=%d", fd < 0 ? -errno : 0);
  if (fd >= 0) { write(fd, "escaped", 7); close(fd); }
#elif defined(SYMLINK_OUT)
  int s = symlink(SECRET_DIR, "link");
  int rc = try_read("link/secret", buf, sizeof buf);
  int fd = open("link/planted", O_CREAT | O_WRONLY, 0600);
  snprintf(out, sizeof out, "symlink=%d rc=%d plant=%d data=%s", s < 0 ? -errno : 0, rc,
           fd < 0 ? -errno : 0, buf);
  if (fd >= 0) close(fd);
#elif defined(TCP_CONNECT)
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  int rc = sock < 0 ? -errno : 0;
  if (sock >= 0) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(PORT); a.sin_addr.s_addr = htonl(0x7f000001);
    rc = connect(sock, (struct sockaddr *)&a, sizeof a) < 0 ? -errno : 1;
    if (rc == 1) write(sock, "escaped", 7);
    close(sock);
  }
  snprintf(out, sizeof out, "rc=%d", rc);
#elif defined(FORK_BOMB)
  int n = 0, err = 0;
  for (int i = 0; i < FORKS; i++) {
    pid_t p = fork();
    if (p == 0) {
      if (setsid() >= 0) { int e = open("escaped", O_CREAT | O_WRONLY, 0600); if (e >= 0) close(e); }
      pause();
      _exit(0);
    }
    if (p < 0) { err = errno; break; }
    n++;
  }
  usleep(300000);
  snprintf(out, sizeof out, "forked=%d errno=%d escaped=%d", n, err, access("escaped", F_OK) == 0);
#elif defined(ALLOC)
  size_t n = (size_t)ALLOC_MB << 20;
  char *p = malloc(n);
  int rc = p ? 0 : -ENOMEM;
  if (p) { memset(p, 1, n); free(p); }
  snprintf(out, sizeof out, "rc=%d", rc);
#elif defined(EXEC_SHELL)
  int rc = system("cat " SECRET " > shell_out 2>&1; echo escaped > " OUTSIDE);
  int leaked = try_read("shell_out", buf, sizeof buf) == 0 && strstr(buf, SECRET_TEXT) != 0;
  snprintf(out, sizeof out, "system=%d leaked=%d", rc, leaked);
#elif defined(PTRACE_DAEMON)
  pid_t d = getppid();
  long pt = ptrace(PTRACE_ATTACH, d, 0, 0);
  int pt_err = pt < 0 ? -errno : 0;
  if (pt == 0) ptrace(PTRACE_DETACH, d, 0, 0);
  int k = kill(d, SIGCONT) < 0 ? -errno : 0;
  int group = kill(-d, 0) < 0 ? -errno : 0;     /* signal 0: only asks whether it may */
  int everyone = kill(-1, 0) < 0 ? -errno : 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", (int)d);
  int env = try_read(path, buf, sizeof buf);
  snprintf(out, sizeof out, "ptrace=%d kill=%d group=%d everyone=%d environ=%d", pt_err, k,
           group, everyone, env);
#endif
  result(out);
}
"""

KINDS = ("read_secret", "write_outside", "symlink_out", "tcp_connect", "fork_bomb", "alloc",
         "exec_shell", "ptrace_daemon")


def build(directory, kind: str, secret: Path, outside: Path, port: int = 0, forks: int = 24,
          alloc_mb: int = 1024) -> str:
    """Build the hostile library `kind` (one of KINDS) into `directory`."""
    directory = Path(directory)
    src = directory / "hostile.c"
    src.write_text(HOSTILE_C)
    out = directory / ("hostile_%s.so" % kind)
    defines = {"SECRET": '"%s"' % secret, "SECRET_DIR": '"%s"' % secret.parent,
               "SECRET_TEXT": '"%s"' % secret.read_text().strip(), "OUTSIDE": '"%s"' % outside,
               "PORT": str(port), "FORKS": str(forks), "ALLOC_MB": str(alloc_mb)}
    flags = ["-D%s=%s" % kv for kv in defines.items()] + ["-D" + kind.upper()]
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", *flags, str(src), "-o", str(out)],
                   check=True)
    return str(out)


def attempt(remote, lib_path: str) -> str:
    """Load the hostile library in the session; the text it wrote to "result"."""
    remote.upload(lib_path)
    try:
        remote.load_module(os.path.basename(lib_path))
    except Exception:  # noqa: B902 - not a TVM module: expected once the constructor ran
        pass
    return bytes(remote.download("result")).decode()


def fields(text: str) -> dict:
    """"rc=-13 data=" -> {"rc": "-13", "data": ""}."""
    out = {}
    for part in text.split():
        key, _, value = part.partition("=")
        out[key] = value
    return out


def processes_in_group(pgid: int) -> list:
    """Pids whose process group is `pgid` (read from /proc/<pid>/stat)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields_after = stat.rsplit(")", 1)[1].split()
        if int(fields_after[2]) == pgid:
            found.append(int(name))
    return found


def in_child(body) -> dict:
    """Fork; the child runs body() -> dict (a process the sandbox may narrow
    for good) and sends it back as JSON; {"crash": repr} if body raised."""
    import json
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            try:
                out = body()
            except BaseException as err:  # noqa: B902 - report anything to the parent
                out, code = {"crash": repr(err)}, 1
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def systemd_252_like_filter():
    """What the unit's SystemCallFilter=@system-service alone does on systemd 252:
    landlock_* and seccomp() fail with EPERM (prctl stays allowed)."""
    from edge_server.session import seccomp
    lib = seccomp._lib()
    ctx = lib.seccomp_init(seccomp.ACT_ALLOW)
    try:
        for name in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
                     "seccomp"):
            seccomp._rule(lib, ctx, seccomp._act_errno(errno.EPERM), name)
        return seccomp.Filter(seccomp._export(lib, ctx), seccomp.resolve("seccomp"), (), False)
    finally:
        lib.seccomp_release(ctx)


def filtered_argv(*argv) -> list:
    """A command line that runs `argv` under systemd_252_like_filter()."""
    return [sys.executable, "-m", "tests.support.hostile_kit", "filtered", *map(str, argv)]


if __name__ == "__main__" and sys.argv[1:2] == ["filtered"]:
    from edge_server.session import seccomp as _seccomp
    _seccomp.set_no_new_privs()
    _seccomp.load(systemd_252_like_filter())
    os.execv(sys.argv[2], sys.argv[2:])
