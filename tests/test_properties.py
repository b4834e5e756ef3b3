"""Hardening matrix row 15: property tests for the parsers that see input
nobody controls (environment variables, a file on disk, peer host names).

Each parser never raises anything but its documented error, and applying
it again (or to its own output) changes nothing.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from test_hardening_hosts import _sends_sni
from truststore import _common, _hook

settings.register_profile(
    "truststore-hardening",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("truststore-hardening")

WORDS = sorted(_hook.ON_WORDS | _hook.OFF_WORDS)
# Surrounding white space as people (and shells, and Windows) produce it.
SPACE = st.text(alphabet=" \t\r\n\x0b\x0c\u00a0\u2003", max_size=4)


def _case_variants(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: "".join(c.upper() if up else c for c, up in zip(word, flags, strict=True))
    )


switch_values = st.one_of(
    st.text(),
    st.sampled_from(WORDS).flatmap(_case_variants),
    st.builds(lambda a, w, b: a + w + b, SPACE, st.sampled_from(WORDS), SPACE),
    # What os.environ makes of non-UTF-8 bytes on POSIX.
    st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
)


# -- the switch parser -------------------------------------------------------


@PROFILE
@given(switch_values)
def test_parse_switch_total_and_exact(value: str) -> None:
    result = _hook.parse_switch(value)
    word = value.strip().lower()
    expected = True if word in _hook.ON_WORDS else False if word in _hook.OFF_WORDS else None
    assert result is expected


@PROFILE
@given(switch_values, SPACE, SPACE)
def test_parse_switch_ignores_surrounding_space(value: str, before: str, after: str) -> None:
    assert _hook.parse_switch(before + value + after) is _hook.parse_switch(value)


@PROFILE
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_parse_switch_ascii_case_insensitive(value: str) -> None:
    assert (
        _hook.parse_switch(value.upper())
        is _hook.parse_switch(value.lower())
        is _hook.parse_switch(value)
    )


@PROFILE
@given(switch_values)
def test_parse_switch_idempotent_on_its_own_verdict(value: str) -> None:
    result = _hook.parse_switch(value)
    if result is not None:
        assert _hook.parse_switch("on" if result else "off") is result
        assert _hook.parse_switch(str(result)) is result  # "True"/"False"


@PROFILE
@given(switch_values)
def test_decide_never_raises_and_warns_in_one_line(value: str) -> None:
    enabled, rule, warnings = _hook.decide({_hook.SWITCH_VARIABLE: value})
    assert isinstance(enabled, bool) and rule
    assert all("\n" not in w and "\r" not in w for w in warnings)
    if _hook.parse_switch(value) is None:
        assert len(warnings) >= 1 and _hook.SWITCH_VARIABLE in warnings[0]
    else:
        assert enabled is _hook.parse_switch(value)


# -- the config reader ---------------------------------------------------------

config_lines = st.one_of(
    st.builds(
        lambda k, v, a, b: f"{a}{k}{b}={a}{v}{b}",
        st.sampled_from(["inject", "INJECT", "Inject", "other", "colour"]),
        st.one_of(st.sampled_from(WORDS), st.text(max_size=8)),
        SPACE.filter(lambda s: "\n" not in s and "\r" not in s),
        SPACE.filter(lambda s: "\n" not in s and "\r" not in s),
    ),
    st.builds(lambda t: "#" + t, st.text(max_size=20)),
    st.just(""),
    st.text(max_size=30),
)
config_texts = st.one_of(st.text(), st.lists(config_lines, max_size=8).map("\n".join))


def _parse(text: str) -> bool | ValueError | None:
    try:
        return _hook.parse_config(text)
    except ValueError as exc:
        return exc


@PROFILE
@given(config_texts)
def test_parse_config_raises_only_value_error(text: str) -> None:
    result = _parse(text)
    if isinstance(result, ValueError):
        message = str(result)
        assert message and "\n" not in message and "\r" not in message
    else:
        assert result in (True, False, None)


@PROFILE
@given(config_texts)
def test_parse_config_idempotent(text: str) -> None:
    """Reading what it would write back gives the same setting."""
    result = _parse(text)
    if isinstance(result, bool):
        assert _hook.parse_config(_hook.format_config(result)) is result


@PROFILE
@given(config_texts, st.lists(st.one_of(st.just(""), st.text(max_size=20).map("# ".__add__))))
def test_parse_config_ignores_comments_and_blank_lines(text: str, noise: list[str]) -> None:
    assume(all(len((n + "x").splitlines()) == 1 for n in noise))  # one line each
    result = _parse(text)
    noisy = _parse("\n".join([*noise, text, *noise]))
    if isinstance(result, ValueError):
        assert isinstance(noisy, ValueError)
    else:
        assert noisy is result


@PROFILE
@given(st.booleans())
def test_format_config_round_trips(enabled: bool) -> None:
    text = _hook.format_config(enabled)
    assert _hook.parse_config(text) is enabled
    assert _hook.parse_config(text + text) is enabled


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@PROFILE
@given(
    st.one_of(
        st.binary(max_size=300),
        config_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.just(b"\0" * 70_000),
    )
)
def test_read_config_never_raises(scratch: Path, data: bytes) -> None:
    path = scratch / "truststore-auto.conf"
    path.write_bytes(data)
    setting, problem = _hook.read_config(str(path))
    if problem is None:
        assert setting in (True, False, None)
        if not data.startswith(b"\xef\xbb\xbf"):  # (a UTF-8 BOM is skipped)
            assert setting is _hook.parse_config(data[:65536].decode("utf-8"))
    else:
        assert setting is None
        assert problem.startswith(f"ignoring {path}: ")
        assert "\n" not in problem and "\r" not in problem
    # Reading it again gives the same answer.
    assert _hook.read_config(str(path)) == (setting, problem)


def test_read_config_missing_is_no_problem(scratch: Path) -> None:
    assert _hook.read_config(str(scratch / "absent.conf")) == (None, None)
    assert _hook.read_config(os.path.join(str(scratch / "absent-dir"), "x.conf")) == (None, None)


# -- host-name normalisation -------------------------------------------------------

dns_names = st.from_regex(
    r"\A([A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?\.){0,3}[A-Za-z]{2,6}\.?\Z"
)
addresses = st.ip_addresses().flatmap(
    lambda ip: st.sampled_from(
        [str(ip), ip.exploded, ip.exploded.upper()]
        if isinstance(ip, ipaddress.IPv6Address)
        else [str(ip)]
    )
)
any_host = st.one_of(st.none(), st.text(), dns_names, addresses)


@PROFILE
@given(any_host)
def test_normalize_host_total_and_idempotent(host: str | None) -> None:
    once = _common.normalize_host(host)
    assert (once is None) is (host is None)
    assert _common.normalize_host(once) == once


@PROFILE
@given(st.one_of(dns_names, addresses, st.text(alphabet=st.characters(max_codepoint=127))))
def test_normalize_host_ignores_ascii_case(host: str) -> None:
    assert _common.normalize_host(host.upper()) == _common.normalize_host(host.lower())


@PROFILE
@given(addresses)
def test_normalize_host_keeps_the_address(host: str) -> None:
    normalized = _common.normalize_host(host)
    assert normalized is not None and _common.is_ip_address(normalized)
    assert ipaddress.ip_address(normalized) == ipaddress.ip_address(host)


@PROFILE
@given(st.one_of(dns_names, addresses))
def test_address_or_name_matches_openssl(host: str) -> None:
    """The backends' address test agrees with the one CPython + OpenSSL
    apply on Linux (which decides whether SNI is sent)."""
    encoded = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)._encode_hostname(host)  # type: ignore[attr-defined]
    assert _common.is_ip_address(encoded) is not _sends_sni(encoded)
