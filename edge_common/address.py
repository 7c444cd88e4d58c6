"""HOST:PORT, the one parser for every address a person types.

Forms: "10.0.0.2:9190", "tracker.lab:9190", "[::1]:9190", and — when the
caller has a default port — "10.0.0.2", "tracker.lab", "[::1]" or a bare
IPv6 address "::1". An unbracketed IPv6 address followed by a port
("::1:9190") is ambiguous, so it is refused with the bracketed form to use.
"""
import ipaddress
from typing import NamedTuple, Optional

TRACKER_PORT = 9190   # python -m tvm.exec.rpc_tracker's default, and MetaSchedule's


class AddressError(ValueError):
    """A HOST:PORT that cannot be used; the message says which part and what works."""


class Address(NamedTuple):
    """(host, port); a tuple, so socket calls take it as it is."""
    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def format_address(host: str, port: int) -> str:
    """The inverse of parse_address: IPv6 hosts in brackets."""
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def parse_address(text, default_port: Optional[int] = None, what: str = "address") -> Address:
    """"host:port" / "[v6]:port" (or a bare host when default_port is given) -> Address.

    what: how the message names the value ("tracker address", "--tracker").
    """
    shown = "%s %r" % (what, text)
    example = "e.g. 10.0.0.2:%d or [::1]:%d" % (default_port or TRACKER_PORT,
                                               default_port or TRACKER_PORT)
    if not isinstance(text, str):
        raise AddressError("%s is not HOST:PORT text (%s)" % (shown, example))
    host, port_text = _split(text.strip(), shown, example)
    if port_text is None:
        if default_port is None:
            raise AddressError("%s is not HOST:PORT: the port is missing (%s)" % (shown, example))
        port = default_port
    else:
        port = _port(port_text, shown, example)
    if not host:
        raise AddressError("%s is not HOST:PORT: the host is empty (%s)" % (shown, example))
    if any(c.isspace() for c in host):
        raise AddressError("%s: the host contains whitespace (%s)" % (shown, example))
    return Address(host, port)


def _split(text: str, shown: str, example: str):
    """(host, port text or None)."""
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close:
            raise AddressError("%s: '[' without a closing ']' (%s)" % (shown, example))
        if not _is_ipv6(host):
            raise AddressError("%s: %r in brackets is not an IPv6 address (%s)"
                               % (shown, host, example))
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise AddressError("%s: expected ':PORT' after ']' (%s)" % (shown, example))
        return host, rest[1:]
    colons = text.count(":")
    if colons == 0:
        return text, None
    if colons == 1:
        host, _, port_text = text.partition(":")
        return host, port_text
    if _is_ipv6(text):
        return text, None
    raise AddressError("%s: an IPv6 address with a port needs brackets, e.g. [%s]:%d"
                       % (shown, text.rpartition(":")[0] or "::1", TRACKER_PORT))


def _port(port_text: str, shown: str, example: str) -> int:
    if not port_text.isdigit() or not port_text.isascii():
        raise AddressError("%s is not HOST:PORT: port %r is not a number (%s)"
                           % (shown, port_text, example))
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AddressError("%s: port %d outside 1..65535 (%s)" % (shown, port, example))
    return port


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True
