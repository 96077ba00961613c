"""Command lines of the four upstream components, as the sandbox runs them on one loopback host.

Pure: ports, paths and certificates in, argv out. The choices that differ from a production
cluster, and why:
- etcd keeps no fsync (a throwaway test store) and listens on loopback only;
- kube-apiserver: `--advertise-address=127.0.0.1` (hosts without a default route), no endpoint
  reconciler (nothing else serves), `TaintNodesByCondition` off because no node-lifecycle
  controller runs to lift the not-ready taint it puts on a new Node; NodeRestriction on, as kubeadm;
- kube-controller-manager runs only the controllers a cluster of Jobs needs, without
  node-lifecycle / taint-eviction / pod-gc (they would judge our process kubelet by a real one).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .pki import ADMIN, CONTROLLER_MANAGER, KUBELET_CLIENT, SCHEDULER, Pki

SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    "namespace-controller", "garbage-collector-controller", "job-controller", "cronjob-controller",
    "ttl-after-finished-controller", "deployment-controller", "replicaset-controller",
    "serviceaccount-controller", "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
    "endpoints-controller", "endpointslice-controller", "resourcequota-controller",
    "clusterrole-aggregation-controller", "disruption-controller",
)
# Metadata for every request: who did what to which object, with the response code. Never bodies:
# Secrets and tokens must not land in the audit log.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
  - level: Metadata
"""


@dataclasses.dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the control plane keeps its files inside the sandbox state dir."""
    state_dir: Path

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.state_dir / "audit-policy.yaml"

    def kubeconfig(self, who: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{who}.yaml"


def etcd(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    client, peer = f"http://127.0.0.1:{ports.etcd_client}", f"http://127.0.0.1:{ports.etcd_peer}"
    return [str(binary), "etcd", "--name=sandbox", f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=sandbox={peer}", "--unsafe-no-fsync", "--log-level=warn"]


def apiserver(binary: Path, layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    return [
        str(binary), "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={ports.apiserver}",
        "--endpoint-reconciler-type=none", f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--tls-cert-file={pki.cert('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        f"--kubelet-client-certificate={pki.cert(KUBELET_CLIENT.file)}",
        f"--kubelet-client-key={pki.key(KUBELET_CLIENT.file)}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--authorization-mode=Node,RBAC", "--allow-privileged=true",
        "--enable-admission-plugins=NodeRestriction", "--disable-admission-plugins=TaintNodesByCondition",
        f"--audit-policy-file={layout.audit_policy}", f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json", "--audit-log-maxsize=0",
        "--profiling=false", "--v=1",
    ]


def controller_manager(binary: Path, layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    config = layout.kubeconfig(CONTROLLER_MANAGER.file)
    return [
        str(binary), "kube-controller-manager",
        f"--kubeconfig={config}", f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1", f"--secure-port={ports.controller_manager}", "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}", f"--root-ca-file={pki.ca_cert}",
        f"--controllers={','.join(CONTROLLERS)}", f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--concurrent-job-syncs=10", "--kube-api-qps=200", "--kube-api-burst=400",
        "--profiling=false", "--v=1",
    ]


def scheduler(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    config = layout.kubeconfig(SCHEDULER.file)
    return [
        str(binary), "kube-scheduler",
        f"--kubeconfig={config}", f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1", f"--secure-port={ports.scheduler}", "--leader-elect=false",
        "--profiling=false", "--v=1",
    ]


ADMIN_KUBECONFIG = ADMIN.file
