"""TLS with Python's clients: redis-py (``ssl=True``) on the TLS RESP port, with and without a
client certificate, and pymemcache (``tls_context``) on the TLS memcached port. The
certificates are made with the openssl command line, as docs/OPERATIONS.md shows."""

import pathlib
import shutil
import ssl
import subprocess
import tempfile

import pytest
import redis

import ratelimitd_testing


def openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def sign(name: str, ext: str, cwd: pathlib.Path) -> None:
    """``name``.key and ``name``.crt, signed by ca.crt, with the extensions ``ext``."""
    openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=cwd)


@pytest.fixture(scope="module")
def pki():
    if shutil.which("openssl") is None:
        ratelimitd_testing.fail("openssl is required (apt-get install openssl)")
    d = pathlib.Path(tempfile.mkdtemp(prefix="ratelimitd-pytest-tls-"))
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA", cwd=d)
    sign("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "extendedKeyUsage=serverAuth\n", d)
    sign("client", "extendedKeyUsage=clientAuth\n", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(pki):
    d = ratelimitd_testing.Daemon(
        "--tls-port", "0", "--memcached-tls-port", "0",
        "--tls-cert-file", str(pki / "server.crt"), "--tls-key-file", str(pki / "server.key"),
        "--tls-ca-cert-file", str(pki / "ca.crt"))
    yield d
    d.kill()


def test_redis_py_checks_over_tls_with_a_client_certificate(pki, daemon):
    r = redis.Redis(host="127.0.0.1", port=daemon.tls_port, socket_timeout=5, ssl=True,
                    ssl_ca_certs=str(pki / "ca.crt"), ssl_certfile=str(pki / "client.crt"),
                    ssl_keyfile=str(pki / "client.key"))
    assert r.ping() is True
    assert r.execute_command("RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "2/1m") == b"OK"
    pipe = r.pipeline(transaction=False)
    for _ in range(3):
        pipe.execute_command("RL.CHECK", "ip:1", "/login")
    allowed = [reply[0] for reply in pipe.execute()]
    assert allowed == [1, 1, 0]
    assert r.info("server")["tls_port"] == daemon.tls_port
    assert r.info("stats")["rl_tls_handshakes"] >= 1


def test_redis_py_without_a_client_certificate_is_refused(pki, daemon):
    r = redis.Redis(host="127.0.0.1", port=daemon.tls_port, socket_timeout=5, ssl=True,
                    ssl_ca_certs=str(pki / "ca.crt"))
    with pytest.raises(redis.ConnectionError):
        r.ping()
    # The refusal is counted; the plain port still serves.
    plain = redis.Redis(host="127.0.0.1", port=daemon.port, socket_timeout=5)
    assert plain.info("stats")["rl_tls_handshake_failures"] >= 1


def test_pymemcache_over_tls(pki, daemon):
    from pymemcache.client.base import Client
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    mc = Client(("127.0.0.1", daemon.mc_tls_port), connect_timeout=5, timeout=5,
                tls_context=context)
    assert mc.set("a", b"1", noreply=False) is True
    assert mc.incr("a", 41) == 42
    assert mc.get("a") == b"42"
    r = redis.Redis(host="127.0.0.1", port=daemon.port, socket_timeout=5)
    assert r.get("a") == b"42", "the same key space as RESP"
