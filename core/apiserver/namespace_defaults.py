"""What every namespace holds from its start: the ``default`` ServiceAccount and the
``kube-root-ca.crt`` ConfigMap (key ``ca.crt``: the cluster CA, for pods to trust the API
server). Kubernetes' serviceaccounts controller and root-ca-cert-publisher keep them; kcore
runs one small loop in the daemon, :func:`maintain_namespace_defaults`.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from kcore import api
from kcore.api.defaults import DEFAULT_SERVICE_ACCOUNT
from kcore.api.registry import for_type
from kcore.apiserver.objects import ListOptions, ObjectStore
from kcore.errors import AlreadyExists, NotFound

__all__ = [
    "ROOT_CA_CONFIGMAP",
    "ensure_namespace_defaults",
    "maintain_namespace_defaults",
]

log = structlog.get_logger(__name__)

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


async def ensure_namespace_defaults(
    objects: ObjectStore, namespace: str, *, ca_pem: bytes | None = None
) -> None:
    """Give ``namespace`` its default ServiceAccount and, given ``ca_pem``, its
    ``kube-root-ca.crt`` with that CA (replacing another). Nothing happens in a namespace
    that is gone or being deleted."""
    try:
        ns = await objects.get(for_type(api.Namespace), None, namespace)
    except NotFound:
        return
    if ns["metadata"].get("deletionTimestamp"):
        return
    sa_info = for_type(api.ServiceAccount)
    try:
        await objects.get(sa_info, namespace, DEFAULT_SERVICE_ACCOUNT)
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            await objects.create(
                sa_info, namespace, {"metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}
            )
            log.info("created default service account", namespace=namespace)
    if ca_pem is not None:
        await _ensure_root_ca(objects, namespace, ca_pem.decode("ascii"))


async def _ensure_root_ca(objects: ObjectStore, namespace: str, ca: str) -> None:
    info = for_type(api.ConfigMap)
    try:
        cm = await objects.get(info, namespace, ROOT_CA_CONFIGMAP)
    except NotFound:
        body = {
            "metadata": {
                "name": ROOT_CA_CONFIGMAP,
                "annotations": {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION},
            },
            "data": {ROOT_CA_KEY: ca},
        }
        with contextlib.suppress(AlreadyExists):
            await objects.create(info, namespace, body)
        return
    annotations = cm["metadata"].get("annotations") or {}
    if cm.get("data") == {ROOT_CA_KEY: ca} and DESCRIPTION_ANNOTATION in annotations:
        return
    cm["data"] = {ROOT_CA_KEY: ca}
    cm.pop("binaryData", None)
    cm["metadata"]["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}
    await objects.update(info, namespace, ROOT_CA_CONFIGMAP, cm)
    log.info("updated root CA config map", namespace=namespace)


async def maintain_namespace_defaults(
    objects: ObjectStore, *, ca_pem: bytes | None, retry_delay: float = 1.0
) -> None:
    """Run until cancelled: watch Namespaces, default ServiceAccounts and root CA
    ConfigMaps, and put back what a new namespace lacks or what someone deleted or changed.

    Each watch starts with a full list, also after it breaks (a compaction, a store
    outage), so a restart of the daemon or of a watch misses nothing. A namespace whose
    defaults could not be written is tried again after ``retry_delay`` seconds.
    """
    queue: asyncio.Queue[str] = asyncio.Queue()
    watched = (
        (api.Namespace, None, ("ADDED", "MODIFIED")),
        (api.ServiceAccount, DEFAULT_SERVICE_ACCOUNT, ("DELETED",)),
        (api.ConfigMap, ROOT_CA_CONFIGMAP, ("MODIFIED", "DELETED")),
    )
    async with asyncio.TaskGroup() as tasks:
        for kind, name, types in watched:
            tasks.create_task(_watch(objects, kind, name, types, queue, retry_delay))
        tasks.create_task(_reconcile(objects, queue, ca_pem, retry_delay))


async def _watch(
    objects: ObjectStore,
    kind: type,
    name: str | None,
    types: tuple[str, ...],
    queue: asyncio.Queue[str],
    retry_delay: float,
) -> None:
    """Queue the namespace of each event of ``types``, for ever."""
    info = for_type(kind)
    options = (
        ListOptions.parse(info.kind, field_selector=f"metadata.name={name}")
        if name
        else ListOptions()
    )
    while True:
        try:
            async for event in objects.watch(info, None, options, send_initial=True):
                if event.type in types:
                    meta = event.object["metadata"]
                    queue.put_nowait(meta["name"] if name is None else meta["namespace"])
        except Exception as exc:
            log.warning("namespace defaults: watch failed", resource=info.plural, error=str(exc))
        await asyncio.sleep(retry_delay)


async def _reconcile(
    objects: ObjectStore, queue: asyncio.Queue[str], ca_pem: bytes | None, retry_delay: float
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        namespace = await queue.get()
        try:
            await ensure_namespace_defaults(objects, namespace, ca_pem=ca_pem)
        except Exception as exc:
            log.warning("namespace defaults failed", namespace=namespace, error=str(exc))
            loop.call_later(retry_delay, queue.put_nowait, namespace)
