"""Validates rendered Kubernetes manifests offline, then checks Sluice's own rules on them.

    python manifests.py --keda-crds DIR --sluice-python PY OVERLAY=RENDERED.yaml ...

Schemas: core kinds against Kubernetes' own (kubernetes-validate, strict: unknown fields
are errors), KEDA's kinds against the openAPIV3Schema of KEDA's CRDs, the Prometheus
Operator's two kinds against the structure written below (their CRDs are not vendored).
Any other kind is a finding: nothing renders unchecked.

Sluice's rules come from the design and from the code, which `--sluice-python` (the
project's virtualenv) is asked for: the queue names of sluice/topology.py and the settings'
defaults, so a renamed queue or a longer shutdown grace fails here, not in production.
Each finding is printed; the exit status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30"  # the oldest with appArmorProfile in securityContext
API_PORT, GATEWAY_PORT = 50051, 50052
# The worker's capabilities, each explained in deploy/image/README.md; no more.
WORKER_CAPABILITIES = {"SYS_ADMIN", "SETUID", "SETGID", "CHOWN", "FOWNER", "DAC_OVERRIDE",
                       "KILL"}
# Where the worker may connect: RabbitMQ (AMQP, AMQPS), the gateway, DNS.
WORKER_EGRESS_PORTS = {5672, 5671, GATEWAY_PORT, 53}
# Overlays meant for one-node trial clusters, where one control plane is allowed.
SINGLE_REPLICA_OVERLAYS = {"dev"}

Doc = dict[str, Any]


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, overlay: str, doc: Doc | None, message: str) -> None:
        where = f"{doc['kind']}/{doc['metadata']['name']}" if doc else "-"
        self.items.append(f"{overlay}: {where}: {message}")


# Schemas ---------------------------------------------------------------------------------


def crd_schemas(directory: Path) -> dict[tuple[str, str], Doc]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version of every CRD."""
    schemas = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def _require(doc: Doc, path: str, kind: type) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{path} is missing")
        value = value[part]
    if not isinstance(value, kind):
        raise ValueError(f"{path} must be a {kind.__name__}")
    return value


def check_monitoring(doc: Doc) -> None:
    """The Prometheus Operator's kinds, by the fields it needs to act on them."""
    if doc["kind"] == "ServiceMonitor":
        _require(doc, "spec.selector", dict)
        for endpoint in _require(doc, "spec.endpoints", list):
            if not isinstance(endpoint, dict) or not (endpoint.get("port")
                                                      or endpoint.get("targetPort")):
                raise ValueError("every spec.endpoints item needs a port")
    elif doc["kind"] == "PrometheusRule":
        for group in _require(doc, "spec.groups", list):
            if not group.get("name") or not isinstance(group.get("rules"), list):
                raise ValueError("every group needs a name and a rules list")
            for rule in group["rules"]:
                if not isinstance(rule.get("expr"), str | int):
                    raise ValueError(f"{group['name']}: a rule without expr")
                if ("alert" in rule) == ("record" in rule):
                    raise ValueError(f"{group['name']}: a rule is an alert or a record")
    else:
        raise ValueError(f"no schema for {doc['kind']}")


def validate_schema(doc: Doc, crds: dict[tuple[str, str], Doc] | None) -> str | None:
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    group = api_version.split("/")[0] if "/" in api_version else ""
    try:
        if group == "monitoring.coreos.com":
            check_monitoring(doc)
        elif group == "keda.sh":
            if crds is None:
                return None  # skipped as a whole, said once by the caller
            schema = crds.get((api_version, kind))
            if schema is None:
                return f"no KEDA CRD serves {api_version} {kind}"
            jsonschema.Draft7Validator(schema).validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"no Kubernetes {KUBERNETES_VERSION} schema for {api_version} {kind}"
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path) or "(root)"
        return f"schema: {path}: {exc.message}"
    except ValueError as exc:
        return f"structure: {exc}"
    return None


# Sluice's rules --------------------------------------------------------------------------


def sluice_facts(python: str, config: dict[str, str]) -> dict[str, Any]:
    """Asks the code itself, with the ConfigMap's settings applied."""
    program = """
import json, sys
from sluice.settings import Settings
from sluice.topology import RETRY_DELAYS_MS, Topology
s = Settings(**{k[len("SLUICE_"):].lower(): v for k, v in json.load(sys.stdin).items()})
t = Topology(s.queue_prefix)
print(json.dumps({
    "work_queues": [t.work_queue(n) for n in range(t.shard_count)],
    "other_queues": [t.dead_letter_queue, t.parked_queue]
                    + [t.retry_queue(d) for d in RETRY_DELAYS_MS],
    "shutdown_grace_s": s.worker_shutdown_grace_s,
    "worker_slots": s.worker_slots,
}))
"""
    sluice_env = {k: v for k, v in config.items() if k.startswith("SLUICE_")}
    done = subprocess.run([python, "-c", program], input=json.dumps(sluice_env),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


def containers(doc: Doc) -> Iterator[Doc]:
    spec = pod_spec(doc)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items()) and not selector.get(
        "matchExpressions")


def check_sluice(overlay: str, docs: list[Doc], python: str | None, out: Findings) -> None:
    by_kind: dict[str, dict[str, Doc]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    control, worker = deployments.get("sluice-control-plane"), deployments.get("sluice-worker")
    recovery = deployments.get("sluice-recovery")
    for name, doc in (("sluice-control-plane", control), ("sluice-worker", worker),
                      ("sluice-recovery", recovery)):
        if doc is None:
            out.add(overlay, None, f"no Deployment {name}")
    if not (control and worker and recovery):
        return
    config = by_kind.get("ConfigMap", {}).get("sluice-config", {}).get("data", {})

    # Every container: a pinned image (set by the overlay's images:) and limits.
    for doc in deployments.values():
        for container in containers(doc):
            image = container.get("image", "")
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                out.add(overlay, doc, f"container {container['name']}: image {image!r} "
                        "has no tag or digest")
            if not container.get("resources", {}).get("limits", {}).get("memory"):
                out.add(overlay, doc, f"container {container['name']}: no memory limit")
            if container.get("securityContext", {}).get("privileged"):
                out.add(overlay, doc, f"container {container['name']}: privileged")

    # Only the worker steps outside the runtime's default seccomp profile.
    for doc in (control, recovery):
        profile = pod_spec(doc).get("securityContext", {}).get("seccompProfile", {})
        if profile.get("type") != "RuntimeDefault":
            out.add(overlay, doc, "seccompProfile must be RuntimeDefault")

    # Control plane: replicas, gRPC health probes, a PDB.
    replicas = control["spec"].get("replicas", 1)
    if replicas < 2 and overlay not in SINGLE_REPLICA_OVERLAYS:
        out.add(overlay, control, f"replicas {replicas}: at least 2 share the PostgreSQL store")
    main = next(c for c in pod_spec(control)["containers"] if c["name"] == "control-plane")
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = main.get(probe_name, {})
        command = probe.get("exec", {}).get("command", [])
        if "grpc" not in probe and "sluice-health" not in command:
            out.add(overlay, control, f"{probe_name} is neither a grpc probe nor sluice-health")
    labels = control["spec"]["template"]["metadata"]["labels"]
    if not any(selects(pdb["spec"]["selector"], labels)
               for pdb in by_kind.get("PodDisruptionBudget", {}).values()):
        out.add(overlay, control, "no PodDisruptionBudget selects the control plane")
    if not any(c["name"] == "migrate" and c.get("args", [])[:1] == ["migrate"]
               for c in pod_spec(control).get("initContainers", [])):
        out.add(overlay, control, "no `sluice migrate` init container")

    # Services: the API and the gateway never share one; the gateway is never exposed.
    for service in by_kind.get("Service", {}).values():
        ports = {p.get("targetPort") for p in service["spec"].get("ports", [])}
        if {"api", "gateway"} <= ports:
            out.add(overlay, service, "serves the API and the gateway together")
        if "gateway" in ports and service["spec"].get("type") in ("LoadBalancer", "NodePort"):
            out.add(overlay, service, "exposes the gateway outside the cluster")
    for name, port in (("sluice-api", "api"), ("sluice-gateway", "gateway")):
        service = by_kind.get("Service", {}).get(name)
        if service is None or [p.get("targetPort") for p in service["spec"]["ports"]] != [port]:
            out.add(overlay, service, f"Service {name} must exist with the {port} port alone")

    check_worker_security(overlay, worker, out)
    check_network_policies(overlay, by_kind.get("NetworkPolicy", {}), labels,
                           worker["spec"]["template"]["metadata"]["labels"],
                           recovery["spec"]["template"]["metadata"]["labels"], out)

    scaled = by_kind.get("ScaledObject", {}).get("sluice-worker")
    if scaled is None:
        out.add(overlay, None, "no ScaledObject sluice-worker")
        return
    if python is None:
        return  # said once by the caller
    facts = sluice_facts(python, config)
    grace = pod_spec(worker).get("terminationGracePeriodSeconds", 30)
    if grace < facts["shutdown_grace_s"]:
        out.add(overlay, worker, f"terminationGracePeriodSeconds {grace} is shorter than "
                f"SLUICE_WORKER_SHUTDOWN_GRACE_S {facts['shutdown_grace_s']}")
    check_scaling(overlay, scaled, facts, out)


def check_worker_security(overlay: str, worker: Doc, out: Findings) -> None:
    spec = pod_spec(worker)
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        out.add(overlay, worker, "shares a host namespace")
    # Unconfined on purpose (bwrap's pivot_root; deploy/image/README.md), but explicit.
    if not spec.get("securityContext", {}).get("seccompProfile", {}).get("type"):
        out.add(overlay, worker, "the pod's seccompProfile must be stated")
    for container in spec["containers"]:
        context = container.get("securityContext", {})
        capabilities = context.get("capabilities", {})
        if capabilities.get("drop") != ["ALL"]:
            out.add(overlay, worker, f"{container['name']}: capabilities must drop ALL")
        extra = set(capabilities.get("add", [])) - WORKER_CAPABILITIES
        if extra:
            out.add(overlay, worker, f"{container['name']}: capabilities beyond the sandbox's "
                    f"needs: {sorted(extra)}")


def check_network_policies(overlay: str, policies: dict[str, Doc], control: dict[str, str],
                           worker: dict[str, str], recovery: dict[str, str],
                           out: Findings) -> None:
    if not any(p["spec"].get("podSelector") == {} and "Ingress" in p["spec"]["policyTypes"]
               and "Egress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress")
               and not p["spec"].get("egress") for p in policies.values()):
        out.add(overlay, None, "no default-deny NetworkPolicy")

    def admits(rule: Doc, port: int) -> bool:
        ports = rule.get("ports")
        return not ports or any(p.get("port") == port for p in ports)

    allowed_peers = ({"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}
                     for name in (worker["app.kubernetes.io/name"],
                                  recovery["app.kubernetes.io/name"]))
    allowed = list(allowed_peers)
    for policy in policies.values():
        spec = policy["spec"]
        if selects(spec["podSelector"], control) and spec["podSelector"]:
            for rule in spec.get("ingress", []):
                if admits(rule, GATEWAY_PORT) and any(peer not in allowed
                                                      for peer in rule.get("from", [{}])):
                    out.add(overlay, policy, f"port {GATEWAY_PORT} admits more than the "
                            "workers and recovery")
        if selects(spec["podSelector"], worker) and spec["podSelector"]:
            if "Egress" not in spec.get("policyTypes", []):
                out.add(overlay, policy, "the workers' policy does not restrict egress")
            for rule in spec.get("egress", []):
                ports = {p.get("port") for p in rule.get("ports", [])}
                if not rule.get("to") or not ports or not ports <= WORKER_EGRESS_PORTS:
                    out.add(overlay, policy, f"a worker egress rule goes beyond RabbitMQ, the "
                            f"gateway and DNS: {rule}")


def check_scaling(overlay: str, scaled: Doc, facts: dict[str, Any], out: Findings) -> None:
    spec = scaled["spec"]
    if spec["scaleTargetRef"].get("name") != "sluice-worker":
        out.add(overlay, scaled, "does not scale sluice-worker")
    if spec.get("minReplicaCount", 0) != 0:
        out.add(overlay, scaled, "minReplicaCount is not 0 (scale to zero)")
    triggers = [t for t in spec.get("triggers", []) if t.get("type") == "rabbitmq"]
    if len(triggers) != 1:
        out.add(overlay, scaled, "wants exactly one rabbitmq trigger (KEDA takes the max of "
                "several triggers, not their sum)")
        return
    meta = triggers[0]["metadata"]
    if meta.get("protocol") != "http":
        out.add(overlay, scaled, "protocol must be http: only the management API counts "
                "unacknowledged (running) jobs")
    if meta.get("excludeUnacknowledged", "false") != "false":
        out.add(overlay, scaled, "excludeUnacknowledged would stop counting running jobs")
    if meta.get("useRegex") != "true" or meta.get("operation", "sum") != "sum":
        out.add(overlay, scaled, "every shard queue must be summed (useRegex, operation sum)")
    if meta.get("mode") != "QueueLength" or meta.get("value") != str(facts["worker_slots"]):
        out.add(overlay, scaled, f"mode QueueLength with value = SLUICE_WORKER_SLOTS "
                f"({facts['worker_slots']})")
    pattern = re.compile(meta.get("queueName", ""))
    missed = [q for q in facts["work_queues"] if not pattern.search(q)]
    wrong = [q for q in facts["other_queues"] if pattern.search(q)]
    if missed:
        out.add(overlay, scaled, f"queueName misses work queues {missed}")
    if wrong:
        out.add(overlay, scaled, f"queueName matches queues that are not work: {wrong}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keda-crds", type=Path)
    parser.add_argument("--sluice-python")
    parser.add_argument("rendered", nargs="+", help="OVERLAY=FILE")
    args = parser.parse_args()

    # Without either, those checks are skipped; deploy/check.sh says so.
    crds = crd_schemas(args.keda_crds) if args.keda_crds else None
    out = Findings()
    for item in args.rendered:
        overlay, _, path = item.partition("=")
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        for doc in docs:
            problem = validate_schema(doc, crds)
            if problem:
                out.add(overlay, doc, problem)
        check_sluice(overlay, docs, args.sluice_python, out)
        print(f"  {overlay}: {len(docs)} objects")
    for item in out.items:
        print(f"  FINDING {item}")
    return 1 if out.items else 0


if __name__ == "__main__":
    sys.exit(main())
