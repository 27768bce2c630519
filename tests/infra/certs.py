"""Throwaway certificate authorities and certificates for TLS tests (the `cryptography` package):
a CA signs server and client certificates for 127.0.0.1/localhost; files are replaced atomically
(write, then rename), as a Kubernetes Secret update or cert-manager renewal does."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: bytes  # PEM
    key: bytes   # PEM
    serial: int


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Authority:
    """A self-signed CA that issues leaf certificates."""

    def __init__(self, name: str) -> None:
        self._key = _key()
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder().subject_name(self._name).issuer_name(self._name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(self._key, hashes.SHA256()))
        self.pem = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, client: bool = False, peer: bool = False,
              names: tuple[str, ...] = ("localhost",),
              addresses: tuple[str, ...] = ("127.0.0.1",)) -> Issued:
        """A leaf certificate for a server (those names and addresses), a client, or a `peer`
        that is both (a Redis node on the TLS cluster bus)."""
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        if peer:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self._key, hashes.SHA256()))
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), serial)


def replace(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a temporary file renamed over it)."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def write_pair(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    """`stem`.crt and `stem`.key in `directory` (replaced when they exist)."""
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    replace(key, issued.key)
    replace(cert, issued.cert)
    return cert, key


def serial_of(pem_or_der: bytes) -> int:
    if pem_or_der.startswith(b"-----"):
        return int(x509.load_pem_x509_certificate(pem_or_der).serial_number)
    return int(x509.load_der_x509_certificate(pem_or_der).serial_number)
