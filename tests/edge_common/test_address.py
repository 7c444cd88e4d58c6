"""HOST:PORT: the forms people type parse, everything else gets a message that
names the value and shows a form that works."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_common.address import Address, AddressError, format_address, parse_address


@pytest.mark.parametrize("text, default, expected", [
    ("10.0.0.2:9190", None, ("10.0.0.2", 9190)),
    ("tracker.lab:1", None, ("tracker.lab", 1)),
    ("[::1]:9190", None, ("::1", 9190)),
    ("[fe80::1%eth0]:9191", None, ("fe80::1%eth0", 9191)),
    (" 127.0.0.1:65535 ", None, ("127.0.0.1", 65535)),
    ("boardhost", 9190, ("boardhost", 9190)),
    ("[::1]", 9190, ("::1", 9190)),
    ("::1", 9190, ("::1", 9190)),
    ("10.0.0.2:9191", 9190, ("10.0.0.2", 9191)),
])
def test_the_forms_people_type(text, default, expected):
    assert parse_address(text, default) == expected


@pytest.mark.parametrize("text, default, words", [
    ("10.0.0.2", None, "port is missing"),
    ("[::1]", None, "port is missing"),
    (":9190", None, "host is empty"),
    ("", 9190, "host is empty"),
    ("10.0.0.2:http", None, "port 'http' is not a number"),
    ("10.0.0.2:", None, "port '' is not a number"),
    ("10.0.0.2:+90", None, "is not a number"),
    ("10.0.0.2:\u0669", None, "is not a number"),
    ("10.0.0.2:0", None, "port 0 outside 1..65535"),
    ("10.0.0.2:70000", 9190, "port 70000 outside 1..65535"),
    ("[::1:9190", None, "without a closing"),
    ("[host]:9190", None, "not an IPv6 address"),
    ("[::1]9190", None, "expected ':PORT'"),
    ("fe80::1:9190:x", 9190, r"needs brackets, e.g. \[fe80::1:9190\]:9190"),
    ("my host:9190", None, "whitespace"),
    (None, 9190, "not HOST:PORT text"),
])
def test_bad_addresses_say_what_is_wrong_and_what_works(text, default, words):
    with pytest.raises(AddressError, match=words) as info:
        parse_address(text, default, what="--tracker")
    assert "--tracker" in str(info.value)
    assert "e.g." in str(info.value)


def test_format_puts_ipv6_in_brackets():
    assert str(Address("::1", 9190)) == "[::1]:9190"
    assert format_address("10.0.0.2", 1) == "10.0.0.2:1"


hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str))


@settings(max_examples=300, deadline=None)
@given(hosts, st.integers(1, 65535))
def test_format_then_parse_round_trips(host, port):
    assert parse_address(format_address(host, port)) == (host, port)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30), st.sampled_from([None, 9190]))
def test_any_text_parses_to_a_usable_address_or_raises_address_error(text, default):
    try:
        addr = parse_address(text, default)
    except AddressError as err:
        assert repr(text) in str(err)
        return
    assert addr.host and not any(c.isspace() for c in addr.host)
    assert 1 <= addr.port <= 65535
