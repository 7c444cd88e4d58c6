"""The session's work directory, the only place a client may write.

Stock TVM's `tvm.rpc.server.workpath` joins the client's name onto the temp
dir, so "/etc/x" or "../../x" writes wherever it points. Here every name a
client sends goes through `WorkDir.path`, which refuses absolute names,
`..`, and anything that resolves (through symlinks) outside the directory,
and uploads are bounded per file and for the directory as a whole.

Limits are checked when an upload arrives; TVM's RPC layer has already read
the whole message into memory by then, so the per-file limit protects the
disk, not the session's memory.
"""
import os
import shutil
import tempfile
from typing import List

# Longest file name a client may send (Linux PATH_MAX).
MAX_NAME_LEN = 4096


class WorkDirError(ValueError):
    """A request outside the work directory or beyond its limits."""


def _mb(nbytes: int) -> str:
    if nbytes < (1 << 20):
        return "%d bytes" % nbytes
    return "%.1f MiB (%d bytes)" % (nbytes / (1 << 20), nbytes)


class WorkDir:
    def __init__(self, root: str, max_upload_bytes: int, max_disk_bytes: int):
        self.root = os.path.realpath(root)
        self.max_upload_bytes = max_upload_bytes
        self.max_disk_bytes = max_disk_bytes

    def path(self, name) -> str:
        """The absolute path of `name` inside the work dir; WorkDirError if
        the name is not a plain relative path that stays inside."""
        if not isinstance(name, str):
            raise WorkDirError("file name must be a string, got %s" % type(name).__name__)
        if len(name) > MAX_NAME_LEN:
            raise WorkDirError("file name of %d characters is too long (at most %d)"
                               % (len(name), MAX_NAME_LEN))
        if "\0" in name:
            raise WorkDirError("file name %r contains a NUL byte" % name[:80])
        if os.path.isabs(name):
            raise WorkDirError("file name %r is absolute; files live in the session's work "
                               "directory, give a relative name like 'lib.so'" % name[:80])
        if ".." in name.replace("\\", "/").split("/"):
            raise WorkDirError("file name %r climbs out of the session's work directory with "
                               "'..'; give a name inside it like 'lib.so'" % name[:80])
        full = os.path.realpath(os.path.join(self.root, name))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise WorkDirError("file name %r leads outside the session's work directory "
                               "(through a symlink)" % name[:80])
        return full

    def usage(self) -> int:
        """Bytes used by regular files in the work dir (symlinks not followed)."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for fname in files:
                try:
                    total += os.lstat(os.path.join(dirpath, fname)).st_size
                except FileNotFoundError:
                    continue
        return total

    def upload(self, name, data) -> None:
        path = self.path(name)
        size = len(data)
        if size > self.max_upload_bytes:
            raise WorkDirError("upload %r is %s, over the per-file limit of %s"
                               % (name[:80], _mb(size), _mb(self.max_upload_bytes)))
        replaced = os.path.getsize(path) if os.path.isfile(path) else 0
        used = self.usage()
        if used - replaced + size > self.max_disk_bytes:
            raise WorkDirError("upload %r (%s) would take the session's work directory to %s, "
                               "over its limit of %s; remove files first"
                               % (name[:80], _mb(size), _mb(used - replaced + size),
                                  _mb(self.max_disk_bytes)))
        if path == self.root or os.path.isdir(path):
            raise WorkDirError("cannot upload to %r: it is a directory" % name[:80])
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        # Write beside, then rename: truncating a library the session has
        # loaded would crash it (SIGBUS/SIGSEGV in code still mapped), as
        # re-uploading a module under the same name does on the stock server.
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def download(self, name) -> bytes:
        path = self.path(name)
        if not os.path.isfile(path):
            raise WorkDirError("cannot download %r: no such file in the session's work "
                               "directory" % name[:80])
        with open(path, "rb") as f:
            return f.read()

    def remove(self, name) -> None:
        """Remove a file or directory; like the stock server, a name that does not
        exist, or the work dir itself (MetaSchedule's cleanup calls remove("")),
        is not an error: stock tuning scripts rely on that, and the daemon removes
        the whole work dir when the session ends. Names outside it still are."""
        path = self.path(name)
        if path == self.root:
            return
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)

    def listdir(self, name) -> str:
        """Entries of a directory, comma-separated, as the stock client expects."""
        path = self.path(name or ".")
        if not os.path.isdir(path):
            raise WorkDirError("cannot list %r: not a directory in the session's work "
                               "directory" % name[:80])
        entries: List[str] = sorted(os.listdir(path))
        return ",".join(entries)
