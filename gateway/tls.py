"""A self-signed certificate for the HTTPS port, made on first start and reused afterwards.

Clients trust it by pinning the certificate itself (``ssl.create_default_context(cafile=
cert.pem)``, ``curl --cacert cert.pem``). A deployment with a real certificate passes its
own files to gunicorn instead and never calls this.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from storage import private_dir, private_file

__all__ = ["ensure_self_signed_cert"]

log = logging.getLogger(__name__)

VALIDITY = dt.timedelta(days=825)  # the longest a browser accepts for a server certificate
RENEW_BEFORE = dt.timedelta(days=1)


def ensure_self_signed_cert(
    directory: Path,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1", "::1"),
) -> tuple[Path, Path]:
    """Return ``(cert.pem, key.pem)`` in ``directory/tls``, creating them when needed.

    They are (re)generated when missing, unreadable, mismatched, expiring within a day, or
    not covering every requested name and address. The key file has mode 0600.
    """
    tls_dir = directory / "tls"
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    if tls_dir.exists():  # made by an older version, or by hand: 0700, the key 0600
        private_dir(tls_dir)
        private_file(key_path)
    wanted = _alt_names(hostnames, ips)
    reason = _unusable(cert_path, key_path, wanted)
    if reason is None:
        return cert_path, key_path
    log.info("generating a self-signed TLS certificate in %s (%s)", tls_dir, reason)
    private_dir(tls_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key_path, key_pem)
    _write_atomically(cert_path, _self_signed(key, wanted).public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)
    return cert_path, key_path


def _alt_names(hostnames: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return names


def _self_signed(
    key: ec.EllipticCurvePrivateKey, alt_names: list[x509.GeneralName]
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smartcharge")])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a client's clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _unusable(cert_path: Path, key_path: Path, wanted: list[x509.GeneralName]) -> str | None:
    """Why the existing pair cannot be reused, or None if it can."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        return "none yet"
    except (OSError, ValueError, TypeError) as exc:
        return f"unreadable: {exc}"
    if key.public_key() != cert.public_key():
        return "key does not match certificate"
    if cert.not_valid_after_utc - RENEW_BEFORE < dt.datetime.now(dt.UTC):
        return "expired or about to"
    try:
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    missing = [n for n in wanted if n not in present]
    return f"does not cover {missing}" if missing else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, replacing it in one rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
