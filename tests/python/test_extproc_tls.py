"""ext_proc over TLS (``--tls-cert``, ``--tls-key``) and mTLS (``--tls-client-ca``), for a shared
ext_proc service reached over the network: a grpcio client that trusts the CA is served (ALPN h2),
one without a valid client certificate is refused when mTLS is on, and bad TLS flags or files stop
the start with one error naming the option and the file.

Certificates are made per test session with the ``openssl`` command (Debian's openssl package).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from extproc_helpers import CHANNEL_OPTIONS, Outcome, Stream, request_headers
from overlayd_proc import OverlaydProcess, overlayd_bin


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)


def _leaf(directory: Path, name: str, ca: str, *, server: bool) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n" if server
                   else "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", ext.name, "-out", f"{name}.pem", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _leaf(directory, "server", "ca", server=True)
    _leaf(directory, "client", "ca", server=False)
    _leaf(directory, "stranger", "other-ca", server=False)
    return directory


def _config(directory: Path) -> Path:
    from overlayd_proc import OVERLAY_CONFIG_YAML
    path = directory / "overlays.yaml"
    path.write_text(OVERLAY_CONFIG_YAML)
    return path


def _start(pki: Path, tmp_path: Path, *extra: str) -> OverlaydProcess:
    return OverlaydProcess(_config(tmp_path), extra_args=(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), *extra)).start()


def _call(proc: OverlaydProcess, pki: Path, client: str | None) -> Outcome:
    """One pass-through exchange over TLS as `client` (None: no client certificate)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(pki / f"{client}.pem").read_bytes() if client else None)
    with grpc.secure_channel(proc.grpc_target, credentials, options=CHANNEL_OPTIONS) as channel:
        return Stream(channel).send(request_headers("passthrough.test")).close()


def _served(outcome: Outcome) -> bool:
    return outcome.code == grpc.StatusCode.OK and len(outcome.responses) == 1


def _refused(outcome: Outcome) -> bool:
    return outcome.code == grpc.StatusCode.UNAVAILABLE and not outcome.responses


def _stop(proc: OverlaydProcess) -> None:
    assert proc.stop() == 0, proc.describe()


def test_tls_serves_a_client_that_trusts_the_ca(pki, tmp_path):
    proc = _start(pki, tmp_path)
    try:
        outcome = _call(proc, pki, None)
        assert _served(outcome), outcome
        # A client without TLS (h2c) is not answered.
        with grpc.insecure_channel(proc.grpc_target, options=CHANNEL_OPTIONS) as plain:
            outcome = Stream(plain).send(request_headers("passthrough.test")).close()
            assert _refused(outcome), outcome
    finally:
        _stop(proc)


def test_mtls_refuses_clients_without_a_certificate_of_the_ca_and_serves_those_with_one(pki, tmp_path):
    proc = _start(pki, tmp_path, "--tls-client-ca", str(pki / "ca.pem"))
    try:
        for client in (None, "stranger"):
            outcome = _call(proc, pki, client)
            assert _refused(outcome), (client, outcome)
        outcome = _call(proc, pki, "client")
        assert _served(outcome), outcome
    finally:
        _stop(proc)


BAD_FLAGS = {
    "cert without key": (["--tls-cert", "{pki}/server.pem"], "--tls-cert needs --tls-key"),
    "key without cert": (["--tls-key", "{pki}/server.key"], "--tls-key needs --tls-cert"),
    "client ca alone": (["--tls-client-ca", "{pki}/ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
    "missing cert file": (["--tls-cert", "{pki}/nope.pem", "--tls-key", "{pki}/server.key"],
                          "--tls-cert {pki}/nope.pem: cannot read the file (No such file or directory)"),
    "key is not pem": (["--tls-cert", "{pki}/server.pem", "--tls-key", "{pki}/server.ext"], "--tls-key {pki}/server.ext: not a PEM private key"),
    "cert is not pem": (["--tls-cert", "{pki}/server.ext", "--tls-key", "{pki}/server.key"], "--tls-cert {pki}/server.ext:"),
    "key of another cert": (["--tls-cert", "{pki}/server.pem", "--tls-key", "{pki}/client.key"],
                            "--tls-cert {pki}/server.pem with --tls-key {pki}/client.key:"),
    "client ca not pem": (["--tls-cert", "{pki}/server.pem", "--tls-key", "{pki}/server.key", "--tls-client-ca", "{pki}/server.ext"],
                          "--tls-client-ca {pki}/server.ext:"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_tls_settings_stop_the_start_with_the_option_and_file_named(pki, case):
    args, expected = BAD_FLAGS[case]
    result = subprocess.run(
        [str(overlayd_bin()), "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         *(arg.format(pki=pki) for arg in args)],
        capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, result.stderr
    assert expected.format(pki=pki) in result.stderr, result.stderr
    assert "listening" not in result.stderr, result.stderr
