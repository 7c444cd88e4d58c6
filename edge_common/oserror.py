"""One way to put an OS error into a log line or a message.

"Connection refused (ECONNREFUSED)": the text a person reads, then the
symbol they can grep the kernel or the man page for.
"""
import errno
import os


def errno_text(code: int, text: str = None) -> str:
    """'Connection refused (ECONNREFUSED)' for an errno value (text: the OS's own
    wording when the caller has it, e.g. a getaddrinfo error whose code is no errno)."""
    name = errno.errorcode.get(code)
    text = text or os.strerror(code)
    return "%s (%s)" % (text, name) if name else text


def describe(err: BaseException) -> str:
    """An OSError as errno_text (the caller's message names the path or peer, in the
    form it shows them); anything else as str()."""
    if isinstance(err, OSError) and err.errno:
        return errno_text(err.errno, err.strerror)
    return str(err) or type(err).__name__
