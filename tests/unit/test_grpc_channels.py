"""TLS settings that are wrong are errors naming the setting, when channels and servers are
made; right ones give TLS credentials. Certificates are made by the test (openssl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.grpc_channels import TlsConfigError, client_tls, open_channel, server_credentials
from sluice.settings import Settings
from tests.support.certs import Authority, Issued, make_authority


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Issued, Issued]:
    ca = make_authority(tmp_path_factory.mktemp("pki"), "test-ca")
    return ca, ca.issue("server", server=True), ca.issue("client", server=False)


def settings(**fields: str) -> Settings:
    return Settings(**fields)


def refused(make, *words: str) -> None:
    with pytest.raises(TlsConfigError) as caught:
        make()
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_no_tls_settings_mean_plaintext() -> None:
    assert server_credentials(settings(), gateway=False) is None
    assert server_credentials(settings(), gateway=True) is None
    assert client_tls(settings()) is None


def test_good_files_give_tls_on_both_sides(pki: tuple[Authority, Issued, Issued]) -> None:
    ca, server, client = pki
    served = settings(tls_cert_file=str(server.cert), tls_key_file=str(server.key),
                      gateway_client_ca_file=str(ca.cert))
    assert server_credentials(served, gateway=False) is not None
    assert server_credentials(served, gateway=True) is not None
    tls = client_tls(settings(tls_ca_file=str(ca.cert), tls_client_cert_file=str(client.cert),
                              tls_client_key_file=str(client.key)))
    assert tls is not None
    assert tls.root_certificates == ca.cert.read_bytes()
    assert tls.certificate_chain == client.cert.read_bytes()


def test_a_missing_certificate_file_names_its_setting(tmp_path: Path,
                                                      pki: tuple[Authority, Issued, Issued]
                                                      ) -> None:
    _, server, _ = pki
    missing = str(tmp_path / "nowhere.pem")
    refused(lambda: server_credentials(
        settings(tls_cert_file=missing, tls_key_file=str(server.key)), gateway=False),
        "SLUICE_TLS_CERT_FILE", "nowhere.pem", "cannot read")
    refused(lambda: client_tls(settings(tls_ca_file=missing)), "SLUICE_TLS_CA_FILE")


def test_a_certificate_without_its_key_is_refused(pki: tuple[Authority, Issued, Issued]
                                                  ) -> None:
    _, server, _ = pki
    refused(lambda: server_credentials(settings(tls_cert_file=str(server.cert)), gateway=False),
            "SLUICE_TLS_CERT_FILE is set but SLUICE_TLS_KEY_FILE is not")
    refused(lambda: server_credentials(settings(tls_key_file=str(server.key)), gateway=True),
            "SLUICE_TLS_KEY_FILE is set but SLUICE_TLS_CERT_FILE is not")


def test_a_key_of_another_certificate_is_refused(pki: tuple[Authority, Issued, Issued]) -> None:
    _, server, client = pki
    refused(lambda: server_credentials(
        settings(tls_cert_file=str(server.cert), tls_key_file=str(client.key)), gateway=False),
        "SLUICE_TLS_CERT_FILE", "SLUICE_TLS_KEY_FILE", "not a certificate and its private key")


def test_files_that_are_not_pem_are_refused(tmp_path: Path,
                                            pki: tuple[Authority, Issued, Issued]) -> None:
    _, server, _ = pki
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    refused(lambda: client_tls(settings(tls_ca_file=str(garbage))),
            "SLUICE_TLS_CA_FILE", "no PEM certificate")
    refused(lambda: server_credentials(
        settings(tls_cert_file=str(server.cert), tls_key_file=str(garbage)), gateway=False),
        "SLUICE_TLS_KEY_FILE", "no PEM private key")
    refused(lambda: server_credentials(
        settings(tls_cert_file=str(server.cert), tls_key_file=str(server.key),
                 gateway_client_ca_file=str(server.key)), gateway=True),
        "SLUICE_GATEWAY_CLIENT_CA_FILE")


def test_client_certificates_and_mtls_need_tls(pki: tuple[Authority, Issued, Issued]) -> None:
    ca, _, client = pki
    refused(lambda: client_tls(settings(tls_client_cert_file=str(client.cert),
                                        tls_client_key_file=str(client.key))),
            "SLUICE_TLS_CA_FILE")
    refused(lambda: server_credentials(settings(gateway_client_ca_file=str(ca.cert)),
                                       gateway=True),
            "SLUICE_GATEWAY_CLIENT_CA_FILE needs SLUICE_TLS_CERT_FILE")
    refused(lambda: client_tls(settings(tls_ca_file=str(ca.cert),
                                        tls_client_cert_file=str(client.cert))),
            "SLUICE_TLS_CLIENT_CERT_FILE is set but SLUICE_TLS_CLIENT_KEY_FILE is not")


async def test_open_channel_checks_the_files_before_anything_is_sent(tmp_path: Path) -> None:
    refused(lambda: open_channel("127.0.0.1:1", settings(tls_ca_file=str(tmp_path / "no.pem"))),
            "SLUICE_TLS_CA_FILE")
    channel = open_channel("127.0.0.1:1", settings())
    await channel.close()
