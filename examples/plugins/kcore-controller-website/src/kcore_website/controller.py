"""The Website controller: one Website becomes a ConfigMap, a Deployment and a Service.

For a Website ``hello`` in namespace ``ns`` it keeps:

* ConfigMap ``hello-content``: ``index.html`` is ``spec.content``;
* Deployment ``hello``: ``spec.replicas`` busybox ``httpd`` containers serving that
  ConfigMap on port 8080 (a hash of the content in the pod template rolls them when the
  page changes);
* Service ``hello``: port 80 to the pods' 8080.

Each is controlled by the Website (an ownerReference with ``controller: true``), so
deleting the Website deletes them (kcore's garbage collector), and a change to one of them
brings the Website back to the queue. The status says how many replicas are ready, with a
``Ready`` condition. A converged Website is reconciled without a single write.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from kcore.api.codec import load_yaml
from kcore.controllers import (
    Reconciler,
    being_deleted,
    controller_ref,
    owner_reference,
    split_key,
)
from kcore.errors import AlreadyExists, Conflict, NotFound, PermanentError

GROUP = "examples.kcore.io"
WEBSITE = (f"{GROUP}/v1", "Website")
CONFIGMAP = ("v1", "ConfigMap")
DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE = ("v1", "Service")
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")

WEBSITE_LABEL = f"{GROUP}/website"
"""On every object made for a Website, and the selector of its pods."""
CONTENT_HASH = f"{GROUP}/content-hash"
IMAGE = "busybox"
PORT = 8080


def definition() -> dict[str, Any]:
    """The CustomResourceDefinition of the Website kind (``crd.yaml`` in this package)."""
    text = resources.files(__package__).joinpath("crd.yaml").read_text()
    return load_yaml(text)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def desired_objects(website: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """What ``website`` should own, by kind."""
    meta = _meta(website)
    name, namespace = meta["name"], meta.get("namespace")
    spec = website.get("spec") or {}
    content = spec.get("content") or ""
    replicas = spec.get("replicas", 1)
    labels = {
        "app.kubernetes.io/name": "website",
        "app.kubernetes.io/instance": name,
        WEBSITE_LABEL: name,
    }
    owner = [owner_reference(website)]

    def metadata(obj_name: str) -> dict[str, Any]:
        return {
            "name": obj_name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": copy.deepcopy(owner),
        }

    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{name}-content"),
        "data": {"index.html": content},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {WEBSITE_LABEL: name}},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {CONTENT_HASH: content_hash(content)},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "httpd",
                            "image": IMAGE,
                            "command": ["httpd", "-f", "-p", str(PORT), "-h", "/www"],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "volumeMounts": [
                                {"name": "content", "mountPath": "/www", "readOnly": True}
                            ],
                        }
                    ],
                    "volumes": [{"name": "content", "configMap": {"name": f"{name}-content"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name),
        "spec": {
            "selector": {WEBSITE_LABEL: name},
            "ports": [{"name": "http", "port": 80, "targetPort": PORT}],
        },
    }
    return {CONFIGMAP: configmap, DEPLOYMENT: deployment, SERVICE: service}


def drift(kind: tuple[str, str], actual: dict[str, Any], desired: dict[str, Any]) -> Any:
    """The merge patch that brings the fields this controller owns back, or ``None`` when
    they are as wanted (fields the API server defaults are left alone)."""
    labels = _meta(actual).get("labels") or {}
    patch: dict[str, Any] = {}
    wanted_labels = _meta(desired)["labels"]
    if any(labels.get(k) != v for k, v in wanted_labels.items()):
        patch["metadata"] = {"labels": wanted_labels}
    if kind == CONFIGMAP:
        if (actual.get("data") or {}) != desired["data"]:
            patch["data"] = {
                **{k: None for k in actual.get("data") or {}},
                **desired["data"],
            }
    elif kind == DEPLOYMENT:
        spec, want = actual.get("spec") or {}, desired["spec"]
        template = spec.get("template") or {}
        container = ((template.get("spec") or {}).get("containers") or [{}])[0]
        want_container = want["template"]["spec"]["containers"][0]
        if (
            spec.get("replicas") != want["replicas"]
            or (_meta(template).get("annotations") or {}).get(CONTENT_HASH)
            != want["template"]["metadata"]["annotations"][CONTENT_HASH]
            or container.get("image") != want_container["image"]
            or container.get("command") != want_container["command"]
        ):
            patch["spec"] = {"replicas": want["replicas"], "template": want["template"]}
    elif kind == SERVICE:
        spec, want = actual.get("spec") or {}, desired["spec"]
        ports = [(p.get("port"), p.get("targetPort")) for p in spec.get("ports") or ()]
        if spec.get("selector") != want["selector"] or ports != [(80, PORT)]:
            patch["spec"] = {"selector": want["selector"], "ports": want["ports"]}
    return patch or None


def _condition(
    old: list[dict[str, Any]], status: str, reason: str, message: str, now: float
) -> list[dict[str, Any]]:
    """The ``Ready`` condition; its transition time (``now``, in seconds) moves only when
    its status does."""
    previous = next((c for c in old if c.get("type") == "Ready"), None)
    stamp = (
        previous.get("lastTransitionTime")
        if previous is not None and previous.get("status") == status
        else datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    ready = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
    }
    return [c for c in old if c.get("type") != "Ready"] + [ready]


class WebsiteController(Reconciler):
    """Reconciles Websites (see the module docstring)."""

    name = "website-controller"
    kinds = (WEBSITE, CONFIGMAP, DEPLOYMENT, SERVICE)

    async def setup(self) -> None:
        """Create the Website definition when the cluster does not have it yet."""
        crd = definition()
        try:
            await self.api.get(*CRD, crd["metadata"]["name"])
        except NotFound:
            try:
                await self.api.create(crd)
            except AlreadyExists:
                pass

    def conformance(self) -> list[Any]:
        """The worlds kcore's controller conformance suite checks this controller in
        (``kcore conformance --plugin website``). Imported here so that only the suite
        loads the scenarios (and pytest, which they need)."""
        from kcore_website.conformance import scenarios

        return scenarios()

    async def reconcile(self, key: str) -> float | None:
        website = self.cached(key)
        if website is None or being_deleted(website):
            return None  # its objects go with it: they name it as their owner
        website = {**website, "apiVersion": WEBSITE[0], "kind": WEBSITE[1]}
        namespace, _ = split_key(key)
        uid = _meta(website)["uid"]
        for kind, desired in desired_objects(website).items():
            obj_name = desired["metadata"]["name"]
            actual = self.informers.get(*kind, obj_name, namespace)
            if actual is None:
                try:
                    await self.api.create(desired)
                except AlreadyExists:
                    return None  # the cache is behind: its event brings the key back
                await self.recorder.event(
                    website, "Normal", "Created", f"Created {kind[1]} {obj_name}"
                )
                continue
            ref = controller_ref(actual)
            if ref is None or ref.get("uid") != uid:
                raise PermanentError(
                    f"{kind[1]} {obj_name} exists and is not controlled by this Website"
                )
            patch = drift(kind, actual, desired)
            if patch is not None:
                await self.api.patch(*kind, obj_name, patch, "merge", namespace=namespace)
        await self.update_status(website)
        return None

    async def update_status(self, website: dict[str, Any]) -> None:
        meta = _meta(website)
        deployment = self.informers.get(*DEPLOYMENT, meta["name"], meta.get("namespace")) or {}
        dstatus = deployment.get("status") or {}
        want = (website.get("spec") or {}).get("replicas", 1)
        ready = int(dstatus.get("readyReplicas") or 0)
        old = website.get("status") or {}
        if ready >= want:
            conditions = _condition(
                old.get("conditions") or [],
                "True",
                "Serving",
                f"{ready}/{want} replicas ready",
                self.now(),
            )
        else:
            conditions = _condition(
                old.get("conditions") or [],
                "False",
                "Starting",
                f"{ready}/{want} replicas ready",
                self.now(),
            )
        status = {
            "observedGeneration": meta.get("generation"),
            "replicas": int(dstatus.get("replicas") or 0),
            "readyReplicas": ready,
            "selector": f"{WEBSITE_LABEL}={meta['name']}",
            "url": f"http://{meta['name']}.{meta.get('namespace')}.svc",
            "conditions": conditions,
        }
        if status == old:
            return
        try:
            await self.api.update_status({**website, "status": status})
        except (Conflict, NotFound):
            # a newer Website (its event requeues it) or none at all
            return


__all__ = [
    "CONTENT_HASH",
    "WEBSITE",
    "WEBSITE_LABEL",
    "WebsiteController",
    "definition",
    "desired_objects",
    "drift",
]
