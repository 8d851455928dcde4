"""Every gRPC channel Sluice opens, and the credentials its two listeners serve with.

TLS is on when the settings name the files (SLUICE_TLS_CERT_FILE + SLUICE_TLS_KEY_FILE on
the servers, SLUICE_TLS_CA_FILE on the clients); a listener with them serves TLS only.
SLUICE_GATEWAY_CLIENT_CA_FILE makes the worker gateway demand a client certificate signed
by that CA, which workers and recovery present from SLUICE_TLS_CLIENT_CERT_FILE and
SLUICE_TLS_CLIENT_KEY_FILE. A file that is missing, unreadable or not what its setting
says is a TlsConfigError naming the setting, raised when the channel or the server is made
(at start), never a handshake that fails later for reasons nobody can see.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from sluice.message_limits import response_max_bytes
from sluice.settings import Settings

ChannelOption = tuple[str, str | int]


class TlsConfigError(ValueError):
    """The message names the setting and what is wrong with its file."""


def _read(setting: str, path: str) -> bytes:
    # A few KB, read once when the channel or server is made.
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise TlsConfigError(f"{setting}={path!r}: cannot read it ({exc.strerror})") from exc


def _pem(setting: str, path: str, kind: str) -> bytes:
    data = _read(setting, path)
    marker = b"-----BEGIN CERTIFICATE-----" if kind == "certificate" else b"PRIVATE KEY-----"
    if marker not in data:
        raise TlsConfigError(f"{setting}={path!r} holds no PEM {kind}")
    return data


def _pair(cert_setting: str, cert_path: str, key_setting: str, key_path: str
          ) -> tuple[bytes, bytes]:
    """(key, certificate chain) as PEM; checked to parse and to belong together."""
    if bool(cert_path) != bool(key_path):
        given, missing = ((cert_setting, key_setting) if cert_path
                          else (key_setting, cert_setting))
        raise TlsConfigError(f"{given} is set but {missing} is not: set both (PEM files) "
                             "or neither")
    chain = _pem(cert_setting, cert_path, "certificate")
    key = _pem(key_setting, key_path, "private key")
    try:
        ssl.create_default_context().load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"{cert_setting}={cert_path!r} and {key_setting}={key_path!r} "
                             f"are not a certificate and its private key ({exc.reason})"
                             ) from exc
    return key, chain


def _ca(setting: str, path: str) -> bytes:
    data = _pem(setting, path, "certificate")
    try:
        ssl.create_default_context(cadata=data.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"{setting}={path!r} is not a PEM CA certificate ({exc})") from exc
    return data


@dataclass(frozen=True)
class ClientTls:
    root_certificates: bytes
    private_key: bytes | None = None
    certificate_chain: bytes | None = None


def client_tls(settings: Settings) -> ClientTls | None:
    """What Sluice's own clients trust and present; None for plaintext (no CA file)."""
    identity = settings.tls_client_cert_file or settings.tls_client_key_file
    if not settings.tls_ca_file:
        if identity:
            raise TlsConfigError("SLUICE_TLS_CLIENT_CERT_FILE/SLUICE_TLS_CLIENT_KEY_FILE need "
                                 "SLUICE_TLS_CA_FILE: a client certificate is presented over "
                                 "TLS only")
        return None
    roots = _ca("SLUICE_TLS_CA_FILE", settings.tls_ca_file)
    if not identity:
        return ClientTls(roots)
    key, chain = _pair("SLUICE_TLS_CLIENT_CERT_FILE", settings.tls_client_cert_file,
                       "SLUICE_TLS_CLIENT_KEY_FILE", settings.tls_client_key_file)
    return ClientTls(roots, key, chain)


def open_channel(target: str, settings: Settings, *,
                 interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
                 options: Sequence[ChannelOption] = ()) -> grpc.aio.Channel:
    """A channel to the API or the gateway: TLS when SLUICE_TLS_CA_FILE is set, else
    plaintext. It receives the largest legitimate response; `options` come after (and so
    win over) the defaults."""
    merged: list[ChannelOption] = [
        ("grpc.max_receive_message_length", response_max_bytes(settings))]
    tls = client_tls(settings)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=[*merged, *options],
                                         interceptors=interceptors)
    if settings.tls_server_name:
        merged.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    merged.extend(options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates, private_key=tls.private_key,
        certificate_chain=tls.certificate_chain)
    return grpc.aio.secure_channel(target, credentials, options=merged,
                                   interceptors=interceptors)


def server_credentials(settings: Settings, *, gateway: bool) -> grpc.ServerCredentials | None:
    """The credentials of a listener; None serves plaintext (no certificate configured).
    The gateway's demand client certificates when SLUICE_GATEWAY_CLIENT_CA_FILE is set."""
    if not (settings.tls_cert_file or settings.tls_key_file):
        if gateway and settings.gateway_client_ca_file:
            raise TlsConfigError("SLUICE_GATEWAY_CLIENT_CA_FILE needs SLUICE_TLS_CERT_FILE and "
                                 "SLUICE_TLS_KEY_FILE: client certificates are asked for over "
                                 "TLS only")
        return None
    key, chain = _pair("SLUICE_TLS_CERT_FILE", settings.tls_cert_file,
                       "SLUICE_TLS_KEY_FILE", settings.tls_key_file)
    client_ca = (_ca("SLUICE_GATEWAY_CLIENT_CA_FILE", settings.gateway_client_ca_file)
                 if gateway and settings.gateway_client_ca_file else None)
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def add_port(server: grpc.aio.Server, address: str,
             credentials: grpc.ServerCredentials | None) -> None:
    """Listens on address: TLS only when there are credentials, plaintext otherwise."""
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
