"""The operator with Direct delivery on the bubble cluster: webhooks and the agents' endpoint behind
one selectorless Service (a port each), the agent image imported into the node.

The test node runs no cluster DNS, so injected agents dial the Service's ClusterIP, which the
serving certificate names too; on a real cluster the URL is the Service's DNS name.

    setup = DirectSetup.start(cluster, aws, workdir, namespaces=["ns"], log=workdir / "operator.log")
    ...; setup.stop()
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.cluster import operator_image
from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.cluster.operator import Operator, operator_env
from tests.cluster.webhook import NAMESPACE, SERVICE, OperatorWebhook, free_port

AGENT_PORT = 8443


def agent_image(cluster: Cluster) -> str:
    """The operator image (built on the host by `make image`), imported into the node."""
    return operator_image.import_into(cluster.node)


@dataclass
class DirectSetup:
    operator: Operator
    hook: OperatorWebhook
    cluster: Cluster

    @classmethod
    def start(
        cls,
        cluster: Cluster,
        aws: MotoServer,
        workdir: Path,
        namespaces: Sequence[str],
        image: str,
        log: Path,
        extra_args: Sequence[str] = (),
    ) -> DirectSetup:
        hook = OperatorWebhook.create(cluster.control_plane, workdir)
        port = free_port()
        manifests = hook.manifests()
        for doc in manifests[:2]:  # the Service and its EndpointSlice: a second port for the agents
            if doc["kind"] == "Service":
                doc["spec"]["ports"].append(
                    {"name": "agents", "port": AGENT_PORT, "targetPort": port, "protocol": "TCP"}
                )
            else:
                doc["ports"].append({"name": "agents", "port": port, "protocol": "TCP"})
        plane = cluster.control_plane
        plane.kubectl("create", "namespace", NAMESPACE, check=False)
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests[:2]))
        service = json.loads(plane.kubectl("get", "-n", NAMESPACE, "service", SERVICE, "-o", "json").stdout)
        cluster_ip = service["spec"]["clusterIP"]
        names = [f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local"]
        pair = plane.ca.issue(SERVICE, dns_names=names, ip_addresses=[cluster_ip], server=True)
        pair.write(hook.cert_dir, "tls")
        (hook.cert_dir / "ca.crt").write_bytes(plane.ca.cert)
        args = [*hook.operator_args(), f"--direct-address=0.0.0.0:{port}"]
        args += [f"--direct-url=https://{cluster_ip}:{AGENT_PORT}", f"--agent-image={image}"]
        for namespace in namespaces:
            args += ["--namespace", namespace]
        operator = Operator(env=operator_env(plane, aws), log=log, args=[*args, *extra_args]).start()
        setup = cls(operator, hook, cluster)
        try:
            plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests[2:]))
            for namespace in namespaces:
                hook.wait_effective(namespace)
        except BaseException:
            setup.stop()
            raise
        return setup

    def stop(self) -> None:
        self.hook.uninstall()
        self.operator.stop()
