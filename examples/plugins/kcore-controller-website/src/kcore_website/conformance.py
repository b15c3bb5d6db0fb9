"""The Website controller's scenario for kcore's controller conformance suite.

``WebsiteController.conformance()`` imports this module, so only the suite loads it (it
needs pytest, through ``kcore.conformance``). Run the suite with::

    kcore conformance --plugin website --suite controllers

The suite gives every callable here a :class:`~kcore.conformance.suites.controllers.ScenarioEnv`:
the test's own API client (its writes are "someone else's" to the controller), the
namespace ``conformance``, the virtual clock and a scratch dict. The scenario, ``hello``:

* **seed**: the Website definition (as ``kubectl apply -f crd.yaml`` would make it: the
  suite starts the controller only after the seed, and a Website cannot exist before its
  kind) and a Website ``hello`` with two replicas;
* **check**: exactly one ConfigMap, Deployment and Service controlled by the Website, each
  labelled and shaped as the controller promises (the page, the replicas, the content
  hash that rolls the pods, the Service's selector and ports), and the status written:
  ``observedGeneration``, ready replicas, selector, URL and a ``Ready`` condition;
* **starts**: a previous leader's ConfigMap already there; every object half-updated and
  the status wrong;
* **perturbations**: the Service deleted, the page defaced, the Deployment scaled, the
  Service relabelled, the status overwritten, new content in the Website;
* **foreign**: a Service a user made under the name another Website wants (the controller
  must refuse to take it over), and objects carrying the Website's label that someone else
  controls;
* **flip**: the Website's replicas between 3 and 2;
* **owner**: the Website, with the objects it owns as its dependents (all three policies);
* **companions**: kcore's garbage collector, and :class:`ReadyDeployments`, which stands in
  for the Deployment controller and the node agents (it reports every replica of a
  Deployment ready), so the status has something to follow.
"""

from __future__ import annotations

import copy
from typing import Any

from kcore.conformance.suites.controllers import OwnerDeletion, Scenario, ScenarioEnv
from kcore.controllers import Reconciler, being_deleted, controller_ref
from kcore.errors import Conflict, NotFound
from kcore_website.controller import (
    CONFIGMAP,
    CONTENT_HASH,
    DEPLOYMENT,
    IMAGE,
    PORT,
    SERVICE,
    WEBSITE,
    WEBSITE_LABEL,
    content_hash,
    definition,
    desired_objects,
)

NAME = "hello"
PAGE = "<h1>Hello from the conformance suite</h1>\n"
OWNED = (CONFIGMAP, DEPLOYMENT, SERVICE)

Obj = dict[str, Any]


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _uid(obj: Obj) -> str:
    return str(_meta(obj).get("uid") or "")


def object_name(kind: tuple[str, str], website: str = NAME) -> str:
    """The name the controller gives its object of ``kind`` for a Website."""
    return f"{website}-content" if kind == CONFIGMAP else website


def website(env: ScenarioEnv, name: str = NAME, replicas: int = 2, content: str = PAGE) -> Obj:
    return {
        "apiVersion": WEBSITE[0],
        "kind": WEBSITE[1],
        "metadata": {"name": name, "namespace": env.namespace},
        "spec": {"replicas": replicas, "content": content},
    }


async def the_website(env: ScenarioEnv) -> Obj:
    site = await env.get(*WEBSITE, NAME)
    assert site is not None, f"the Website {NAME} is gone"
    return site


async def owned(env: ScenarioEnv, kind: tuple[str, str], uid: str) -> list[Obj]:
    """The objects of ``kind`` whose controller is the object with ``uid``."""
    return [o for o in await env.list(*kind) if (controller_ref(o) or {}).get("uid") == uid]


# -- seed and check -----------------------------------------------------------------------------


async def seed(env: ScenarioEnv) -> None:
    await env.api.create(definition())
    await env.api.create(website(env))


def _check_configmap(problems: list[str], cm: Obj, spec: dict[str, Any]) -> None:
    if (cm.get("data") or {}) != {"index.html": spec.get("content") or ""}:
        problems.append("the ConfigMap does not hold the Website's content as index.html")


def _check_deployment(problems: list[str], d: Obj, spec: dict[str, Any]) -> None:
    dspec = d.get("spec") or {}
    want = spec.get("replicas", 1)
    if dspec.get("replicas") != want:
        problems.append(f"the Deployment has {dspec.get('replicas')!r} replicas, want {want}")
    if (dspec.get("selector") or {}).get("matchLabels") != {WEBSITE_LABEL: NAME}:
        problems.append(f"the Deployment's selector is {dspec.get('selector')!r}")
    template = dspec.get("template") or {}
    tmeta = _meta(template)
    if (tmeta.get("labels") or {}).get(WEBSITE_LABEL) != NAME:
        problems.append("the pod template lacks the Website label")
    stamp = (tmeta.get("annotations") or {}).get(CONTENT_HASH)
    if stamp != content_hash(spec.get("content") or ""):
        problems.append(f"the pod template's {CONTENT_HASH} is {stamp!r}: not the current page")
    pod = template.get("spec") or {}
    containers = pod.get("containers") or [{}]
    if containers[0].get("image") != IMAGE or "httpd" not in (containers[0].get("command") or []):
        problems.append("the pod template does not run busybox httpd")
    volumes = pod.get("volumes") or []
    if [v.get("configMap", {}).get("name") for v in volumes] != [object_name(CONFIGMAP)]:
        problems.append(f"the pod template's volumes are {volumes!r}, not the page's ConfigMap")


def _check_service(problems: list[str], svc: Obj) -> None:
    sspec = svc.get("spec") or {}
    if sspec.get("selector") != {WEBSITE_LABEL: NAME}:
        problems.append(f"the Service selects {sspec.get('selector')!r}")
    ports = [(p.get("port"), p.get("targetPort")) for p in sspec.get("ports") or ()]
    if ports != [(80, PORT)]:
        problems.append(f"the Service's ports are {ports}, want [(80, {PORT})]")


async def check(env: ScenarioEnv) -> list[str]:
    site = await env.get(*WEBSITE, NAME)
    if site is None:
        return [f"the Website {NAME} is gone"]
    uid, spec = _uid(site), site.get("spec") or {}
    problems: list[str] = []
    for kind in OWNED:
        mine = await owned(env, kind, uid)
        names = sorted(_meta(o)["name"] for o in mine)
        if names != [object_name(kind)]:
            problems.append(f"{kind[1]}s controlled by the Website: {names}")
            continue
        obj = mine[0]
        if (_meta(obj).get("labels") or {}).get(WEBSITE_LABEL) != NAME:
            problems.append(f"the {kind[1]} lacks the label {WEBSITE_LABEL}={NAME}")
        if not (controller_ref(obj) or {}).get("blockOwnerDeletion"):
            problems.append(f"the {kind[1]}'s owner reference does not block owner deletion")
        if kind == CONFIGMAP:
            _check_configmap(problems, obj, spec)
        elif kind == DEPLOYMENT:
            _check_deployment(problems, obj, spec)
        else:
            _check_service(problems, obj)
    status = site.get("status") or {}
    replicas = spec.get("replicas", 1)
    want = {
        "observedGeneration": _meta(site).get("generation"),
        "replicas": replicas,
        "readyReplicas": replicas,
        "selector": f"{WEBSITE_LABEL}={NAME}",
        "url": f"http://{NAME}.{env.namespace}.svc",
    }
    for field, value in want.items():
        if status.get(field) != value:
            problems.append(f"status.{field} is {status.get(field)!r}, want {value!r}")
    ready = [c for c in status.get("conditions") or () if c.get("type") == "Ready"]
    if len(ready) != 1 or ready[0].get("status") != "True" or ready[0].get("reason") != "Serving":
        problems.append(f"the Ready condition is {ready!r}, want True/Serving")
    elif not ready[0].get("lastTransitionTime"):
        problems.append("the Ready condition has no lastTransitionTime")
    return problems


# -- starting states ------------------------------------------------------------------------------


async def start_made_before(env: ScenarioEnv) -> None:
    """A previous leader created the ConfigMap, then stopped."""
    site = await the_website(env)
    await env.api.create(desired_objects(site)[CONFIGMAP])


async def start_half_updated(env: ScenarioEnv) -> None:
    """Every object there but out of date, and a status that lies."""
    site = await the_website(env)
    objs = copy.deepcopy(desired_objects(site))
    objs[CONFIGMAP]["data"] = {"index.html": "<h1>an old page</h1>", "extra.html": "stale"}
    dspec = objs[DEPLOYMENT]["spec"]
    dspec["replicas"] = 5
    dspec["template"]["metadata"]["annotations"][CONTENT_HASH] = "0123456789abcdef"
    dspec["template"]["spec"]["containers"][0]["image"] = "busybox:old"
    objs[SERVICE]["spec"]["ports"] = [{"name": "http", "port": 8000, "targetPort": 8000}]
    del objs[SERVICE]["metadata"]["labels"][WEBSITE_LABEL]
    for obj in objs.values():
        await env.api.create(obj)
    await env.api.patch(
        *WEBSITE,
        NAME,
        {"status": {"observedGeneration": 7, "replicas": 9, "readyReplicas": 9}},
        namespace=env.namespace,
        subresource="status",
    )


# -- perturbations --------------------------------------------------------------------------------


async def delete_the_service(env: ScenarioEnv) -> None:
    await env.api.delete(*SERVICE, NAME, env.namespace)


async def deface_the_page(env: ScenarioEnv) -> None:
    await env.api.patch(
        *CONFIGMAP,
        object_name(CONFIGMAP),
        {"data": {"index.html": "<h1>defaced</h1>"}},
        namespace=env.namespace,
    )


async def scale_the_deployment(env: ScenarioEnv) -> None:
    await env.api.patch(*DEPLOYMENT, NAME, {"spec": {"replicas": 5}}, namespace=env.namespace)


async def relabel_the_service(env: ScenarioEnv) -> None:
    patch = {"metadata": {"labels": {WEBSITE_LABEL: "elsewhere"}}}
    await env.api.patch(*SERVICE, NAME, patch, namespace=env.namespace)


async def overwrite_the_status(env: ScenarioEnv) -> None:
    await env.api.patch(
        *WEBSITE,
        NAME,
        {"status": {"readyReplicas": 0, "url": "http://elsewhere"}},
        namespace=env.namespace,
        subresource="status",
    )


async def new_content(env: ScenarioEnv) -> None:
    patch = {"spec": {"content": "<h1>A new page</h1>\n"}}
    await env.api.patch(*WEBSITE, NAME, patch, namespace=env.namespace)


# -- someone else's objects ---------------------------------------------------------------------


async def foreign(env: ScenarioEnv) -> list[Obj]:
    """A Service a user made under the name the Website ``taken`` wants, and look-alikes of
    ``hello``'s objects (its label, its selector) that another owner controls."""
    made: list[Obj] = []
    owner = await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "someone-else", "namespace": env.namespace},
        }
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "someone-else",
        "uid": _uid(owner),
        "controller": True,
    }
    made.append(
        await env.api.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "taken", "namespace": env.namespace},
                "spec": {"selector": {"app": "mine"}, "ports": [{"port": 80}]},
            }
        )
    )
    await env.api.create(website(env, "taken", replicas=1))
    made.append(
        await env.api.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{NAME}-extra",
                    "namespace": env.namespace,
                    "labels": {WEBSITE_LABEL: NAME},
                    "ownerReferences": [ref],
                },
                "data": {"index.html": "not the Website's"},
            }
        )
    )
    canary = copy.deepcopy(desired_objects(await the_website(env))[DEPLOYMENT])
    canary["metadata"]["name"] = f"{NAME}-canary"
    canary["metadata"]["ownerReferences"] = [ref]
    canary["spec"]["replicas"] = 1
    made.append(await env.api.create(canary))
    return made


# -- flapping, deletion, summary ------------------------------------------------------------------


async def flip(env: ScenarioEnv, i: int) -> None:
    patch = {"spec": {"replicas": 3 if i % 2 == 0 else 2}}
    await env.api.patch(*WEBSITE, NAME, patch, namespace=env.namespace)


async def dependents(env: ScenarioEnv) -> list[Obj]:
    uid = env.data.get("uid") or _uid(await the_website(env))
    env.data["uid"] = uid
    found = []
    for kind in OWNED:
        for obj in await env.list(*kind):
            if any(r.get("uid") == uid for r in _meta(obj).get("ownerReferences") or ()):
                found.append(obj)
    return found


async def owner(env: ScenarioEnv) -> Obj:
    site = await the_website(env)
    env.data["uid"] = _uid(site)  # dependents() looks for it once the Website is gone
    return site


async def summary(env: ScenarioEnv) -> Any:
    site = await the_website(env)
    cm = await env.get(*CONFIGMAP, object_name(CONFIGMAP))
    d = await env.get(*DEPLOYMENT, NAME)
    svc = await env.get(*SERVICE, NAME)
    assert cm is not None and d is not None and svc is not None, "an object is missing"
    status = dict(site.get("status") or {})
    conditions = sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.pop("conditions", None) or ()
    )
    return (
        cm.get("data"),
        d["spec"].get("replicas"),
        _meta(d["spec"]["template"]).get("annotations"),
        sorted((p.get("port"), p.get("targetPort")) for p in svc["spec"].get("ports") or ()),
        svc["spec"].get("selector"),
        sorted(status.items()),
        conditions,
    )


# -- companions ---------------------------------------------------------------------------------


class ReadyDeployments(Reconciler):
    """Stands in for kcore's Deployment controller and the node agents: reports every
    replica of a Deployment ready (the scenario has no pods)."""

    name = "conformance-ready-deployments"
    kinds = (DEPLOYMENT,)

    async def reconcile(self, key: str) -> float | None:
        d = self.cached(key)
        if d is None or being_deleted(d):
            return None
        meta = _meta(d)
        n = (d.get("spec") or {}).get("replicas", 1)
        want = {
            "observedGeneration": meta.get("generation"),
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
        }
        have = d.get("status") or {}
        if all(have.get(k) == v for k, v in want.items()):
            return None
        try:
            await self.api.patch(
                *DEPLOYMENT,
                meta["name"],
                {"status": want},
                namespace=meta.get("namespace"),
                subresource="status",
            )
        except (NotFound, Conflict):
            pass  # gone, or a newer one whose event brings the key back
        return None


def companions() -> list[Any]:
    # kcore's garbage collector, for the owner deletion check; not a public API yet.
    from kcore.plugins.controllers.garbagecollector import GarbageCollector

    return [ReadyDeployments(), GarbageCollector(kinds=[WEBSITE, *OWNED])]


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            name=NAME,
            seed=seed,
            check=check,
            starts={
                "made-before": start_made_before,
                "half-updated": start_half_updated,
            },
            perturbations={
                "delete-the-service": delete_the_service,
                "deface-the-page": deface_the_page,
                "scale-the-deployment": scale_the_deployment,
                "relabel-the-service": relabel_the_service,
                "overwrite-the-status": overwrite_the_status,
                "new-content": new_content,
            },
            foreign=foreign,
            flip=flip,
            # A flip of the replicas costs one Deployment patch and the status as it moves
            # (the new generation, then the replicas ready): 4 writes measured; 6 leaves
            # room for a status write that meets a Conflict with its own previous one.
            flip_cost=6,
            owner=OwnerDeletion(owner=owner, dependents=dependents),
            summary=summary,
            companions=companions,
        )
    ]


__all__ = ["NAME", "ReadyDeployments", "check", "scenarios", "seed"]
