"""pytest plugin: fixtures that start a pycrane registry on a free loopback port.

* ``pycrane_registry`` (session scope): one anonymous, in-memory registry.
* ``pycrane_registry_factory`` (function scope): ``make(**options)`` starts more,
  stopped at the end of the test. Options: ``disk=True`` (a fresh temp dir) or a
  path; ``username=``/``password=`` (an htpasswd file is written for them);
  ``tls=True`` (a self-signed certificate for 127.0.0.1, its path in
  ``.ca_cert``); ``read_only=True``; anything else :class:`RegistryServer` takes.

Every handle has ``.host`` ("127.0.0.1:PORT"), ``.url``, ``.username`` and
``.password`` (None when anonymous).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pycrane.registry.server import RegistryServer

__all__ = ["make_self_signed_cert", "pycrane_registry", "pycrane_registry_factory"]


def make_self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` for ``host`` into ``directory`` (needs cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def pycrane_registry() -> Iterator[RegistryServer]:
    """An anonymous in-memory registry shared by the whole session."""
    with RegistryServer("127.0.0.1:0") as reg:
        yield reg


@pytest.fixture
def pycrane_registry_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RegistryServer]]:
    """``make(disk=False, username=None, password=None, tls=False, **kw)`` -> a started registry."""
    started: list[RegistryServer] = []

    def make(
        *,
        disk: bool | str | os.PathLike[str] = False,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        **kwargs: Any,
    ) -> RegistryServer:
        tmp = tmp_path_factory.mktemp("pycrane-registry")
        if disk is True:
            kwargs["disk"] = tmp / "storage"
        elif disk:
            kwargs["disk"] = Path(disk)
        if username is not None:
            password = password if password is not None else "password"
            sha = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
            htpasswd = tmp / "htpasswd"
            htpasswd.write_text(f"{username}:{{SHA}}{sha}\n")
            kwargs["htpasswd"] = htpasswd
        if tls:
            kwargs["tls_cert"], kwargs["tls_key"] = make_self_signed_cert(tmp)
        reg = RegistryServer("127.0.0.1:0", username=username, password=password, **kwargs)
        started.append(reg.start())
        return reg

    yield make
    for reg in reversed(started):
        reg.stop()
