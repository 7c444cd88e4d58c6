"""One wording for OS errors: the OS's text, then the errno symbol."""
import errno
import socket

from edge_common.oserror import describe, errno_text


def test_errno_text_names_the_symbol():
    assert errno_text(errno.ECONNREFUSED) == "Connection refused (ECONNREFUSED)"


def test_describe_keeps_the_os_wording_and_leaves_the_path_to_the_caller():
    err = FileNotFoundError(errno.ENOENT, "No such file or directory", "/tmp/root/sys/x")
    assert describe(err) == "No such file or directory (ENOENT)"


def test_describe_a_resolver_error_without_a_fake_symbol():
    err = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe(err) == "Name or service not known"


def test_describe_anything_else_is_its_text_or_its_type():
    assert describe(ValueError("bad frame")) == "bad frame"
    assert describe(EOFError()) == "EOFError"
