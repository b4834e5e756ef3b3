"""What ``truststore.SSLContext`` accepts and rejects, against real servers.

The CA of each test sits in the "OS store" (OpenSSL's default file, set by
the ``os_store`` fixture) and nowhere else; every server is on the loopback
interface.  Rejections assert the OpenSSL ``verify_code`` (this is the Linux
backend) and that the message names the host.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme
from cryptography.x509.oid import ExtendedKeyUsageOID

import truststore
from certs import Issuer, new_key, self_signed_leaf
from clientside import REQUEST, bio_fetch, expect_rejected, fetch, read_all
from support import HTTP_BODY, TLSServer, serve_cert


class V:
    """OpenSSL's X509_V_ERR_* numbers (include/openssl/x509_vfy.h), written
    out here rather than taken from the code under test."""

    X509_V_ERR_UNABLE_TO_GET_CRL = 3
    X509_V_ERR_CERT_NOT_YET_VALID = 9
    X509_V_ERR_CERT_HAS_EXPIRED = 10
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
    X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
    X509_V_ERR_CERT_REVOKED = 23
    # 24 until OpenSSL 3.0, which gave 24 to NO_ISSUER_PUBLIC_KEY.
    X509_V_ERR_INVALID_CA = 79 if ssl.OPENSSL_VERSION_INFO >= (3,) else 24
    X509_V_ERR_PATH_LENGTH_EXCEEDED = 25
    X509_V_ERR_INVALID_PURPOSE = 26
    X509_V_ERR_PERMITTED_VIOLATION = 47
    X509_V_ERR_HOSTNAME_MISMATCH = 62
    X509_V_ERR_IP_ADDRESS_MISMATCH = 64
    X509_V_ERR_EE_KEY_TOO_SMALL = 66


ONE_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture
def ctx(os_store: trustme.CA) -> truststore.SSLContext:
    return truststore.SSLContext()


@pytest.fixture
def issuer(os_store: trustme.CA) -> Issuer:
    return Issuer.from_trustme(os_store)


def serve(issued_chain: bytes, key: bytes, **kwargs: object) -> TLSServer:
    return TLSServer(issued_chain, key, **kwargs)  # type: ignore[arg-type]


# -- accepted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "server_hostname"),
    [
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("*.example.test", "www.example.test"),
        ("bücher.example", "bücher.example"),
        ("localhost", "LOCALHOST"),
        ("Mixed.Example.Test", "mixed.example.test"),
    ],
)
def test_accepts(ctx: ssl.SSLContext, ca: trustme.CA, identity: str, server_hostname: str) -> None:
    with serve_cert(ca.issue_cert(identity)) as server:
        fetch(ctx, server, server_hostname)


def test_idna_host_is_sent_as_a_label(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    seen: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf = ca.issue_cert("bücher.example")
    leaf.configure_cert(server_ctx)
    server_ctx.sni_callback = lambda _s, name, _c: seen.append(name)  # type: ignore[assignment,misc,return-value]
    with TLSServer(b"", b"", context=server_ctx) as server:
        fetch(ctx, server, "bücher.example")
    assert seen == ["xn--bcher-kva.example"]


def test_accepts_ipv6(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    leaf = ca.issue_cert("::1")
    with serve_cert(leaf, host="::1") as server:
        fetch(ctx, server, "::1")
        # The IPv6 literal is an address, never a DNS name.
        expect_rejected(ctx, server, "::2", V.X509_V_ERR_IP_ADDRESS_MISMATCH)


def test_accepts_chain_with_intermediate(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    child = ca.create_child_ca()
    leaf = child.issue_cert("localhost")
    assert len(leaf.cert_chain_pems) == 2  # the server sends leaf + intermediate
    with serve_cert(leaf) as server:
        fetch(ctx, server, "localhost")


def test_accepts_socket_wrapped_before_connect(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    with serve_cert(ca.issue_cert("localhost")) as server:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.connect((server.host, server.port))
            tls.sendall(REQUEST)
            assert read_all(tls).endswith(HTTP_BODY)
        # ... and the same path rejects a wrong host.
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(10)
        with (
            ctx.wrap_socket(raw, server_hostname="wrong.test") as tls,
            pytest.raises(ssl.SSLCertVerificationError) as info,
        ):
            tls.connect((server.host, server.port))
        assert info.value.verify_code == V.X509_V_ERR_HOSTNAME_MISMATCH


def test_accepts_with_deferred_handshake(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    with serve_cert(ca.issue_cert("localhost")) as server:
        fetch(ctx, server, "localhost", do_handshake_on_connect=False)


def test_wrap_bio_by_hand(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    with serve_cert(ca.issue_cert("localhost")) as server:
        sslobj = bio_fetch(ctx, server, "localhost")
        assert sslobj.getpeercert()
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            bio_fetch(ctx, server, "other.test")
    assert info.value.verify_code == V.X509_V_ERR_HOSTNAME_MISMATCH
    assert "'other.test'" in str(info.value)


def test_asyncio(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    async def get(host: str) -> bytes:
        reader, writer = await asyncio.open_connection(
            server.host, server.port, ssl=ctx, server_hostname=host
        )
        writer.write(REQUEST)
        data = await reader.read()
        writer.close()
        return data

    with serve_cert(ca.issue_cert("localhost")) as server:
        assert asyncio.run(get("localhost")).endswith(HTTP_BODY)
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            asyncio.run(get("elsewhere.test"))
    assert info.value.verify_code == V.X509_V_ERR_HOSTNAME_MISMATCH


# -- rejected ----------------------------------------------------------------


def test_rejects_expired(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    leaf = ca.issue_cert("localhost", not_before=_now() - 30 * ONE_DAY, not_after=_now() - ONE_DAY)
    with serve_cert(leaf) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_CERT_HAS_EXPIRED)


def test_rejects_not_yet_valid(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    leaf = ca.issue_cert("localhost", not_before=_now() + ONE_DAY, not_after=_now() + 30 * ONE_DAY)
    with serve_cert(leaf) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_CERT_NOT_YET_VALID)


def test_rejects_wrong_host(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    with serve_cert(ca.issue_cert("localhost", "127.0.0.1")) as server:
        expect_rejected(ctx, server, "example.org", V.X509_V_ERR_HOSTNAME_MISMATCH)
    # A wildcard covers exactly one label.
    with serve_cert(ca.issue_cert("*.example.test")) as server:
        expect_rejected(ctx, server, "a.b.example.test", V.X509_V_ERR_HOSTNAME_MISMATCH)
        expect_rejected(ctx, server, "example.test", V.X509_V_ERR_HOSTNAME_MISMATCH)


def test_rejects_ip_not_in_san(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    # The DNS name "127.0.0.2" in a SAN must not match the address 127.0.0.2 either.
    with serve_cert(ca.issue_cert("localhost", "127.0.0.1")) as server:
        expect_rejected(ctx, server, "127.0.0.2", V.X509_V_ERR_IP_ADDRESS_MISMATCH)


def test_rejects_self_signed_leaf(ctx: ssl.SSLContext) -> None:
    leaf = self_signed_leaf("localhost")
    with serve(leaf.chain_pem(), leaf.key_pem) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)


def test_rejects_untrusted_root(ctx: ssl.SSLContext) -> None:
    stranger = trustme.CA()
    with serve_cert(stranger.issue_cert("localhost")) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_rejects_untrusted_root_sent_by_server(ctx: ssl.SSLContext) -> None:
    """A server that sends its own root along does not make it trusted."""
    stranger = trustme.CA()
    leaf = stranger.issue_cert("localhost")
    chain = leaf.cert_chain_pems[0].bytes() + stranger.cert_pem.bytes()
    with serve(chain, leaf.private_key_pem.bytes()) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)


def test_rejects_missing_intermediate(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    leaf = ca.create_child_ca().issue_cert("localhost")
    with serve(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_rejects_client_auth_only_eku(ctx: ssl.SSLContext, issuer: Issuer) -> None:
    leaf = issuer.issue("localhost", eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    with serve(leaf.chain_pem(), leaf.key_pem) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_INVALID_PURPOSE)


def test_rejects_name_constraint_violation(ctx: ssl.SSLContext, issuer: Issuer) -> None:
    constrained = issuer.issue(ca=True, permitted_dns=["example.com"]).as_issuer()
    inside = constrained.issue("www.example.com")
    outside = constrained.issue("www.example.org")
    with serve(inside.chain_pem(), inside.key_pem) as server:
        fetch(ctx, server, "www.example.com")
    with serve(outside.chain_pem(), outside.key_pem) as server:
        expect_rejected(ctx, server, "www.example.org", V.X509_V_ERR_PERMITTED_VIOLATION)


@pytest.mark.parametrize("basic_constraints", [True, False], ids=["CA:FALSE", "no-extension"])
def test_rejects_intermediate_that_is_not_a_ca(
    ctx: ssl.SSLContext, issuer: Issuer, basic_constraints: bool
) -> None:
    fake_ca = issuer.issue(ca=False, basic_constraints=basic_constraints, eku=None)
    leaf = fake_ca.as_issuer().issue("localhost")
    with serve(leaf.chain_pem(), leaf.key_pem) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_INVALID_CA)


def test_rejects_path_length_exceeded(ctx: ssl.SSLContext, issuer: Issuer) -> None:
    # root (in the store) -> A (pathlen 0) -> B -> leaf: B may not be below A.
    a = issuer.issue(ca=True, path_length=0).as_issuer()
    b = a.issue(ca=True).as_issuer()
    leaf = b.issue("localhost")
    with serve(leaf.chain_pem(), leaf.key_pem) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_PATH_LENGTH_EXCEEDED)
    # A itself may issue leaves.
    good = a.issue("localhost")
    with serve(good.chain_pem(), good.key_pem) as server:
        fetch(ctx, server, "localhost")


def test_rejects_weak_key(ctx: ssl.SSLContext, issuer: Issuer, tmp_path: Path) -> None:
    leaf = issuer.issue("localhost", key=new_key(rsa_bits=1024))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that the server can use the key
    (tmp_path / "chain.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "key.pem").write_bytes(leaf.key_pem)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    assert ctx.security_level >= 2  # type: ignore[attr-defined]
    with TLSServer(b"", b"", context=server_ctx) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_EE_KEY_TOO_SMALL)


def test_rejects_revoked_leaf_with_crl(ctx: ssl.SSLContext, issuer: Issuer, tmp_path: Path) -> None:
    revoked = issuer.issue("localhost")
    fine = issuer.issue("localhost")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(issuer.crl([revoked.cert.serial_number]))
    ctx.load_verify_locations(cafile=crl)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    assert ctx.cert_store_stats()["crl"] == 1
    with serve(fine.chain_pem(), fine.key_pem) as server:
        fetch(ctx, server, "localhost")
    with serve(revoked.chain_pem(), revoked.key_pem) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_CERT_REVOKED)


def test_crl_check_without_crl_fails_closed(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    with serve_cert(ca.issue_cert("localhost")) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_UNABLE_TO_GET_CRL)


def test_empty_store_rejects_and_says_what_was_searched(empty_store: None, ca: trustme.CA) -> None:
    ctx = truststore.SSLContext()
    with serve_cert(ca.issue_cert("localhost")) as server:
        err = expect_rejected(
            ctx, server, "localhost", V.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        )
    assert "no trusted CA certificates could be loaded" in str(err)
    assert "empty-dir" in str(err)


# -- the user's switches keep their stdlib meaning -------------------------------


def test_check_hostname_false_skips_only_the_name(ctx: ssl.SSLContext, ca: trustme.CA) -> None:
    ctx.check_hostname = False
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    with serve_cert(ca.issue_cert("localhost")) as server:
        fetch(ctx, server, "wrong.test")
        fetch(ctx, server, None)
    with (
        serve_cert(trustme.CA().issue_cert("localhost")) as server,
        pytest.raises(ssl.SSLCertVerificationError) as info,
    ):
        fetch(ctx, server, "localhost")
    assert info.value.verify_code == V.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def test_cert_none_verifies_nothing(ctx: ssl.SSLContext) -> None:
    with pytest.raises(ValueError):
        ctx.verify_mode = ssl.CERT_NONE  # check_hostname still on: stdlib refuses too
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    leaf = self_signed_leaf("localhost")
    with serve(leaf.chain_pem(), leaf.key_pem) as server:
        fetch(ctx, server, "wrong.test")
    # And turning it back on checks again.
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    with serve(leaf.chain_pem(), leaf.key_pem) as server:
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)


# -- load_verify_locations adds to the OS store -------------------------------------


@pytest.mark.parametrize("form", ["cafile", "capath", "cadata-pem", "cadata-der"])
def test_load_verify_locations_adds_trust(
    ctx: ssl.SSLContext, ca: trustme.CA, tmp_path: Path, form: str
) -> None:
    extra = trustme.CA()
    if form == "cafile":
        path = tmp_path / "extra.pem"
        extra.cert_pem.write_to_path(str(path))
        ctx.load_verify_locations(cafile=path)
    elif form == "capath":
        directory = tmp_path / "extra-dir"
        directory.mkdir()
        extra.cert_pem.write_to_path(str(directory / "extra.pem"))
        subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
        ctx.load_verify_locations(capath=str(directory))
    elif form == "cadata-pem":
        ctx.load_verify_locations(cadata=extra.cert_pem.bytes().decode())
    else:
        der = ssl.PEM_cert_to_DER_cert(extra.cert_pem.bytes().decode())
        ctx.load_verify_locations(cadata=der)
    with serve_cert(extra.issue_cert("localhost")) as server:
        fetch(ctx, server, "localhost")
    with serve_cert(ca.issue_cert("localhost")) as server:  # the OS store still counts
        fetch(ctx, server, "localhost")
    with serve_cert(trustme.CA().issue_cert("localhost")) as server:  # nothing else does
        expect_rejected(ctx, server, "localhost", V.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)


def test_plain_context_does_not_trust_the_os_store_ca(os_store: trustme.CA) -> None:
    """The control for every test above: the CA is trusted *because of* the OS store."""
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with serve_cert(os_store.issue_cert("localhost")) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(plain, server, "localhost")
        fetch(truststore.SSLContext(), server, "localhost")


def test_backends_report_the_codes_openssl_reports() -> None:
    """Windows/macOS report ``_common``'s numbers; they must be the ones the
    tests above saw OpenSSL (the Linux backend) report for the same failure."""
    from truststore import _common

    for name, value in vars(V).items():
        if name.startswith("X509_V_ERR_") and hasattr(_common, name):
            assert getattr(_common, name) == value, name
