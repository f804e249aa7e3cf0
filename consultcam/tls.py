"""A self-signed certificate for serving on the LAN: browsers give a page the camera only in a secure
context (W3C Secure Contexts §3), so a phone must reach consultcam over HTTPS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from consultcam.files import private_dir, tighten, write_private


def ensure_self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """(cert.pem, key.pem) in `directory`, made on first use for `hosts` (names or IP addresses) plus
    localhost; an existing pair is kept so phones that accepted it once are not asked again. P-256 key, one
    year, subjectAltName per RFC 5280 §4.2.1.6 (browsers ignore the CN). Both files 0600 in a 0700 folder."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        tighten(key_path)  # an older install wrote the certificate 0644
        tighten(cert_path)
        return cert_path, key_path
    private_dir(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    for host in dict.fromkeys([*hosts, "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "consultcam (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    # Both 0600 (consultcam/files.py), the key first: a start that finds a certificate finds its key.
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(key_path, pem_key)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
