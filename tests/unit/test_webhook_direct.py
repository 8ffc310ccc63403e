"""Pod injection for Direct delivery: memory-backed volumes, read-only in the app, the agent as
the first init container (native sidecar) with a startup probe, restricted-profile settings."""

from __future__ import annotations

from tests.unit.test_webhook_pods import NS, admitted, apply_patch, lookup, pod
from tmpfs_secrets.webhook.agent import AGENT_NAME, AgentConfig
from tmpfs_secrets.webhook.pods import mutate, volume_name

AGENT = AgentConfig(image="tmpfs-secrets:test", url="https://op.ns.svc:8443", ca_pem="-----BEGIN CERT")


def injected(body: dict) -> dict:  # type: ignore[type-arg]
    verdict = mutate(body, NS, lookup, AGENT)
    assert verdict.allowed, verdict.message
    return apply_patch(body, verdict.patch)


def test_direct_gets_an_emptydir_read_only_in_apps_and_the_agent_first() -> None:
    body = pod("direct,shop-db", initContainers=[{"name": "migrate", "image": "x"}])
    out = injected(body)
    volumes = {v["name"]: v for v in out["spec"]["volumes"]}
    vol = volume_name("direct")
    assert volumes[vol] == {"name": vol, "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}}
    assert "secret" in volumes[volume_name("shop-db")]  # Secret delivery is unchanged beside it
    token = volumes["tmpfs-secrets-agent-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "tmpfs-secrets.io" and token["expirationSeconds"] == 600
    for container in out["spec"]["containers"]:
        assert {"name": vol, "mountPath": "/secrets/direct", "readOnly": True} in container["volumeMounts"]
    inits = out["spec"]["initContainers"]
    assert [c["name"] for c in inits] == [AGENT_NAME, "migrate"]
    agent = inits[0]
    assert agent["restartPolicy"] == "Always"
    assert agent["image"] == "tmpfs-secrets:test"
    assert "--secret=direct=/tmpfs-secrets/direct" in agent["args"]
    assert "--url=https://op.ns.svc:8443" in agent["args"]
    assert {"name": vol, "mountPath": "/tmpfs-secrets/direct"} in agent["volumeMounts"]  # writable here only
    assert all(m["name"] != volume_name("shop-db") for m in agent["volumeMounts"])
    assert agent["startupProbe"]["exec"]["command"][-2:] == [
        "--check",
        "--secret=direct=/tmpfs-secrets/direct",
    ]
    assert agent["resources"]["limits"]["memory"] == agent["resources"]["requests"]["memory"]
    ctx = agent["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True and ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # Init containers get the mounts only when tmpfs-secrets.io/containers lists them.
    assert "volumeMounts" not in inits[1]


def test_direct_injection_is_idempotent() -> None:
    once = injected(pod("direct"))
    verdict = mutate(once, NS, lookup, AGENT)
    assert verdict.allowed and verdict.patch == ()


def test_without_an_agent_configuration_direct_is_refused_with_what_to_do() -> None:
    verdict = mutate(pod("direct"), NS, lookup, None)
    assert not verdict.allowed
    assert "--direct-address" in verdict.message and "delivery: Secret" in verdict.message


def test_secret_only_pods_get_no_agent() -> None:
    out, _ = admitted(pod("shop-db"))
    assert "initContainers" not in out["spec"]
    assert mutate(pod("shop-db"), NS, lookup, AGENT).patch == mutate(pod("shop-db"), NS, lookup).patch
