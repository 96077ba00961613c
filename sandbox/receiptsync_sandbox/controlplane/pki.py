"""The sandbox cluster's certificates and keys, made fresh for each `up` (like kubeadm's, smaller).

One CA signs the API server's serving cert, every client cert (admin, controller-manager,
scheduler, the node, the API server's kubelet client) and the node agent's serving cert. One EC key
signs and verifies ServiceAccount tokens. Client identities are what RBAC and the Node authorizer
see: CN is the user, O the groups.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
API_SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local")
API_SERVER_IPS = ("127.0.0.1", "10.0.0.1")  # loopback, and the first address of the service range


@dataclasses.dataclass(frozen=True)
class Identity:
    """A client certificate's subject: the user and the groups the API server sees."""
    file: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = Identity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("controller-manager", "system:kube-controller-manager")
SCHEDULER = Identity("scheduler", "system:kube-scheduler")
KUBELET_CLIENT = Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))


def node_identity(node_name: str) -> Identity:
    return Identity("node", f"system:node:{node_name}", ("system:nodes",))


@dataclasses.dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    def cert(self, identity_file: str) -> Path:
        return self.path(f"{identity_file}.crt")

    def key(self, identity_file: str) -> Path:
        return self.path(f"{identity_file}.key")

    @property
    def service_account_key(self) -> Path:
        return self.path("sa.key")

    @property
    def service_account_public_key(self) -> Path:
        return self.path("sa.pub")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str, groups: tuple[str, ...] = ()) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY))


def _sign(builder: x509.CertificateBuilder, ca_key, path: Path) -> None:
    path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def create(directory: Path, node_name: str) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = _key()
    ca_name = _name("receiptsync-sandbox-ca")
    _write_key(pki.path("ca.key"), ca_key)
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True))
    _sign(ca, ca_key, pki.ca_cert)

    def leaf(file: str, subject: x509.Name, usage: list, names: tuple[str, ...] = (),
             ips: tuple[str, ...] = ()) -> None:
        key = _key()
        _write_key(pki.key(file), key)
        builder = (_builder(subject, ca_name, key.public_key(), now)
                   .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
        if names or ips:
            alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        _sign(builder, ca_key, pki.cert(file))

    server, client = [ExtendedKeyUsageOID.SERVER_AUTH], [ExtendedKeyUsageOID.CLIENT_AUTH]
    leaf("apiserver", _name("kube-apiserver"), server, API_SERVER_NAMES, API_SERVER_IPS)
    node = node_identity(node_name)
    for identity in (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KUBELET_CLIENT, node):
        leaf(identity.file, _name(identity.user, identity.groups), client)
    leaf("kubelet", _name(node_name), server, ("localhost", node_name), ("127.0.0.1",))

    sa_key = _key()
    _write_key(pki.service_account_key, sa_key)
    pki.service_account_public_key.write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki
