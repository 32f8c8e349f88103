"""Shared by the k8s tests: golden cases, the strict Kubernetes schema check, the CRD's schema as a validator,
and `fake_api_server`: an aiohttp app that answers the Kubernetes REST paths the reconciler uses from a
FakeKubeApi, which stands in for the API server (none can run here), so the real lightkube client has a server
to talk to on a loopback port."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import kubernetes_validate
import yaml
from aiohttp import web
from lightkube import KubeConfig
from lightkube.config.models import Cluster, User

from meshgate.k8s.api import Kind
from meshgate.k8s.errors import KubeApiError, KubeError, KubeGoneError
from meshgate.k8s.settings import ZoneSettings
from meshgate.k8s.testing import FakeKubeApi
from meshgate.resources import codec
from meshgate.resources.model import Resource

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden" / "k8s"
CRD_PATH = ROOT / "deploy" / "kubernetes" / "crds" / "meshgatewayinstance.yaml"
# The newest Kubernetes whose schemas kubernetes-validate ships; strict: unknown fields are errors.
KUBERNETES_VERSION = "1.37"
UPDATE_GOLDEN = os.environ.get("MESHGATE_UPDATE_GOLDEN") == "1"
WATCH_WINDOW = 0.3


def validate_k8s(obj: Mapping[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError when `obj` breaks the strict schema of its kind."""
    kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)


@dataclass
class Case:
    name: str
    instance: dict[str, Any]
    gateways: list[Resource]
    namespace_annotations: dict[str, str] = field(default_factory=dict)
    settings: ZoneSettings = field(default_factory=ZoneSettings)


def load_gateway(doc: Mapping[str, Any]) -> Resource:
    doc = dict(doc)
    created = doc.pop("creationTime", None)
    resource = codec.load(doc)
    if created is not None:
        resource = resource.with_meta(creation_time=datetime.fromisoformat(str(created).replace("Z", "+00:00")))
    return resource


def settings_from(doc: Mapping[str, Any]) -> ZoneSettings:
    return ZoneSettings(**dict(doc))


def load_case(path: Path) -> Case:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    instance = next(d for d in docs if d.get("kind") == "MeshGatewayInstance")
    namespaces = [d for d in docs if d.get("kind") == "Namespace"]
    settings_docs = [d["zoneSettings"] for d in docs if "zoneSettings" in d]
    return Case(
        name=path.name.removesuffix(".in.yaml"),
        instance=instance,
        gateways=[load_gateway(d) for d in docs if d.get("type") == "MeshGateway"],
        namespace_annotations=dict((namespaces[0]["metadata"].get("annotations") or {}) if namespaces else {}),
        settings=settings_from(settings_docs[0]) if settings_docs else ZoneSettings(),
    )


def golden_cases() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.in.yaml"))


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def _strict(schema: Any) -> Any:
    """The CRD schema as JSON Schema with unknown fields refused (kubectl --validate=strict): every object that
    declares properties gets additionalProperties: false. `x-kubernetes-int-or-string` becomes its anyOf."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "format"}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def crd_validator() -> jsonschema.Draft7Validator:
    version = crd()["spec"]["versions"][0]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    # `metadata: {type: object}` is ObjectMeta, which the API server checks itself.
    return jsonschema.Draft7Validator(schema)


def dump_documents(docs: list[Any], header: str) -> str:
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120, explicit_start=True)
    return header + body


_PLURALS = {
    "meshgatewayinstances": Kind.MESH_GATEWAY_INSTANCE,
    "deployments": Kind.DEPLOYMENT,
    "services": Kind.SERVICE,
    "pods": Kind.POD,
}
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
_PATH = re.compile(
    r"^/(?:api/v1|apis/apps/v1|apis/kuma\.io/v1alpha1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?(?:/(?P<plural>[a-z]+))?(?:/(?P<name>[^/]+))?(?P<status>/status)?$"
)


@dataclass
class Seen:
    """What the fake API server received, for assertions about the wire."""

    requests: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)


def _json(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", as the API server sends it: lightkube reads Status bodies only then.
    return web.Response(body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"})


def _status(error: KubeError) -> web.Response:
    code = error.code if isinstance(error, KubeApiError) else 500
    reason = error.reason if isinstance(error, KubeApiError) else "InternalError"
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": str(error),
        "reason": reason,
        "code": code,
    }
    return _json(body, status=code)


def fake_api_server(api: FakeKubeApi, seen: Seen) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        seen.requests.append((request.method, request.path, dict(request.query), request.content_type))
        if request.method == "POST" and request.path == TOKEN_REVIEWS:
            review = await request.json()
            spec = review.get("spec") or {}
            try:
                status = await api.review_token(spec.get("token", ""), spec.get("audiences") or [])
            except KubeError as exc:
                return _status(exc)
            return _json({**review, "status": status}, status=201)
        match = _PATH.match(request.path)
        if match is None:
            return _json({"kind": "Status", "code": 404, "reason": "NotFound", "message": request.path}, status=404)
        ns, plural, name = match["ns"], match["plural"], match["name"]
        if plural is None and ns is not None:  # /api/v1/namespaces/<name>
            kind, ns, name = Kind.NAMESPACE, "", ns
        elif plural == "namespaces":
            kind, ns = Kind.NAMESPACE, ""
        else:
            kind = _PLURALS[str(plural)]
        try:
            if request.method == "GET" and name is None and request.query.get("watch") == "true":
                return await _watch(request, api, kind)
            if request.method == "GET" and name is None:
                listing = await api.list(kind)
                body = {
                    "kind": f"{kind.value}List",
                    "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": listing.resource_version},
                    "items": listing.items,
                }
                return _json(body)
            if request.method == "GET":
                obj = await api.get(kind, ns or "", str(name))
                if obj is None:
                    return _status(KubeApiError(404, "NotFound", f"{kind.value} {name} not found"))
                return _json(obj)
            if request.method == "PATCH" and match["status"]:
                result = await api.patch_status(kind, ns or "", str(name), await request.json())
                if result is None:
                    return _status(KubeApiError(404, "NotFound", f"{kind.value} {name} not found"))
                return _json(result)
            if request.method == "PATCH":
                assert request.content_type == "application/apply-patch+yaml"
                return _json(await api.apply(yaml.safe_load(await request.text())))
            if request.method == "DELETE":
                if not await api.delete(kind, ns or "", str(name)):
                    return _status(KubeApiError(404, "NotFound", f"{kind.value} {name} not found"))
                return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        except KubeError as exc:
            return _status(exc)
        return _json({"kind": "Status", "code": 405, "reason": "MethodNotAllowed"}, status=405)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _watch(request: web.Request, api: FakeKubeApi, kind: Kind) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "application/json"
    await response.prepare(request)
    try:
        # Like the API server's watch timeout, the stream ends after a while and the client watches again from
        # the last version it saw (lightkube does that by itself). It also frees the server from a handler
        # whose client left: aiohttp does not cancel one.
        with anyio.move_on_after(WATCH_WINDOW):
            async with aclosing(api.watch(kind, resource_version=request.query.get("resourceVersion", ""))) as events:
                async for event in events:
                    await response.write(
                        json.dumps({"type": event.type.value, "object": event.object}).encode() + b"\n"
                    )
    except KubeGoneError as exc:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": 410,
            "reason": "Expired",
            "message": exc.message,
        }
        await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
    return response


def config_for(url: str) -> KubeConfig:
    return KubeConfig.from_one(cluster=Cluster(server=url), user=User(token="test-token"))
