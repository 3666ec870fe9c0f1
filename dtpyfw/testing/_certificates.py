"""A throwaway test CA and a server certificate it signs, for TLS test servers.

Unlike a self-signed server certificate, a CA + leaf pair is what real servers
present: clients verify a chain, and the leaf carries the constraints
(``CA:FALSE``, ``serverAuth``) strict verifiers look for.
"""

from __future__ import annotations

__all__ = ["write_test_ca_and_leaf"]

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from dtpyfw.core._extras import require

_VALIDITY = datetime.timedelta(days=1)
_CLOCK_SKEW = datetime.timedelta(hours=1)


def write_test_ca_and_leaf(ca_path: Path, cert_path: Path, key_path: Path) -> None:
    """Write a fresh CA certificate, and a leaf for ``IP:127.0.0.1`` / ``localhost`` with its key.

    The leaf key is RSA (every TLS server accepts it), written unencrypted with
    mode 0600; the CA's key is discarded, so nothing else can ever be signed.
    """
    x509 = require("cryptography.x509", "cryptography (comes with pyOpenSSL)")
    hashes = require("cryptography.hazmat.primitives.hashes", "cryptography")
    serialization = require("cryptography.hazmat.primitives.serialization", "cryptography")
    ec = require("cryptography.hazmat.primitives.asymmetric.ec", "cryptography")
    rsa = require("cryptography.hazmat.primitives.asymmetric.rsa", "cryptography")
    oid = require("cryptography.x509.oid", "cryptography")

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "dtpyfw test CA")])
    ca = (
        _builder(x509, now, ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(x509, cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "127.0.0.1")])
    leaf = (
        _builder(x509, now, leaf_name, ca_name, leaf_key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(x509, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(leaf.public_bytes(pem))
    key_path.touch(mode=0o600)  # private before the key is in it
    key_path.write_bytes(
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )


def _builder(x509: Any, now: datetime.datetime, subject: Any, issuer: Any, public_key: Any) -> Any:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(x509: Any, *, cert_sign: bool) -> Any:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
