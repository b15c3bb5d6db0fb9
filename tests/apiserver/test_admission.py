"""Admission checks (``kcore_admission_checks``) on every write: in process against the
object store, and end to end with kubectl against a daemon that loads the sample plugin
``sample_plugins.admission`` by its dotted path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from daemon_process import start_daemon, stop_daemon
from inprocess_api import in_process_api
from sample_plugins.admission import (
    ADMITTED,
    CREATED_BY,
    MISBEHAVE,
    PROTECTED,
    AddLabel,
    Misbehave,
    RefuseImage,
)

from kcore import AdmissionRequest, Forbidden, Invalid, KcoreError, NotFound

TESTS = Path(__file__).resolve().parent.parent


def pod(name: str, image: str = "busybox:1.36", *, labels=None, annotations=None) -> dict:
    meta: dict = {"name": name, "labels": dict(labels or {})}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


async def exists(api, name: str) -> bool:
    try:
        await api.get("v1", "Pod", name)
    except NotFound:
        return False
    return True


# -- in process ------------------------------------------------------------------------------


@pytest.fixture
async def admitted():
    """``(api, label_check)`` on an in-process API running the sample plugin's checks."""
    label = AddLabel()
    async with in_process_api(admission_checks=[label, RefuseImage(), Misbehave()]) as (
        api,
        _,
        _,
    ):
        yield api, label


async def test_a_create_is_mutated_and_the_check_sees_the_request(admitted):
    api, label = admitted
    label.seen.clear()
    created = await api.create(pod("good"))
    assert created["metadata"]["labels"][ADMITTED] == "true"
    assert CREATED_BY not in (created["metadata"].get("annotations") or {})  # no user in process
    stored = await api.get("v1", "Pod", "good")
    assert stored["metadata"]["labels"][ADMITTED] == "true"
    [request] = [r for r in label.seen if r.resource == "pods"]
    assert isinstance(request, AdmissionRequest)
    assert (request.operation, request.group, request.version, request.resource) == (
        "CREATE",
        "",
        "v1",
        "pods",
    )
    assert (request.namespace, request.name, request.old, request.user) == (
        "default",
        "good",
        None,
        None,
    )
    assert request.subresource is None and request.dry_run is False
    # after defaulting: the server's fields and defaults are already there
    assert request.obj["metadata"]["uid"] == stored["metadata"]["uid"]
    assert request.obj["spec"]["restartPolicy"] == "Always"


async def test_updates_and_patches_are_checked_with_the_old_object(admitted):
    api, label = admitted
    await api.create(pod("p"))
    label.seen.clear()
    patched = await api.patch("v1", "Pod", "p", {"metadata": {"labels": {ADMITTED: None}}})
    assert patched["metadata"]["labels"][ADMITTED] == "true"  # put back by the check
    assert (
        patched["metadata"]["resourceVersion"]
        == (await api.get("v1", "Pod", "p"))["metadata"]["resourceVersion"]
    )
    [request] = label.seen
    assert request.operation == "UPDATE" and request.old["metadata"]["name"] == "p"
    assert request.old["metadata"]["labels"][ADMITTED] == "true"
    with pytest.raises(Forbidden, match='image "forbidden" is not allowed'):
        await api.patch(
            "v1",
            "Pod",
            "p",
            {"spec": {"containers": [{"name": "c", "image": "forbidden"}]}},
            patch_type="strategic",
        )
    assert (await api.get("v1", "Pod", "p"))["spec"]["containers"][0]["image"] == "busybox:1.36"


async def test_subresource_writes_name_their_subresource(admitted):
    api, label = admitted
    created = await api.create(pod("p"))
    label.seen.clear()
    await api.update_status({**created, "status": {"phase": "Pending", "message": "hi"}})
    await api.bind("p", "node-a")
    assert [(r.operation, r.subresource) for r in label.seen] == [
        ("UPDATE", "status"),
        ("UPDATE", "binding"),
    ]
    assert label.seen[1].obj["spec"]["nodeName"] == "node-a"


async def test_a_refused_create_writes_nothing(admitted):
    api, _ = admitted
    with pytest.raises(Forbidden) as refused:
        await api.create(pod("bad", "forbidden"))
    assert refused.value.code == 403
    assert str(refused.value) == (
        'pods "bad" is forbidden: image "forbidden" is not allowed (sample-image)'
    )
    assert not await exists(api, "bad")


async def test_delete_is_checked(admitted):
    api, label = admitted
    await api.create(pod("keep", labels={PROTECTED: "true"}))
    label.seen.clear()
    with pytest.raises(Forbidden, match="the pod is protected"):
        await api.delete("v1", "Pod", "keep")
    assert await exists(api, "keep")
    [request] = label.seen
    assert (request.operation, request.name, request.obj) == ("DELETE", "keep", None)
    assert request.old["metadata"]["labels"][PROTECTED] == "true"
    await api.patch("v1", "Pod", "keep", {"metadata": {"labels": {PROTECTED: None}}})
    await api.delete("v1", "Pod", "keep")
    assert not await exists(api, "keep")


async def test_dry_run_is_checked_and_stores_nothing(admitted):
    api, label = admitted
    label.seen.clear()
    answer = await api.create(pod("dry"), dry_run=True)
    assert answer["metadata"]["labels"][ADMITTED] == "true"
    assert [r.dry_run for r in label.seen] == [True]
    assert not await exists(api, "dry")
    with pytest.raises(Forbidden):
        await api.create(pod("dry", "forbidden"), dry_run=True)
    await api.create(pod("keep", labels={PROTECTED: "true"}))
    with pytest.raises(Forbidden):
        await api.delete("v1", "Pod", "keep", dry_run=True)


async def test_an_invalid_mutation_is_a_422_and_writes_nothing(admitted):
    api, _ = admitted
    with pytest.raises(Invalid) as invalid:
        await api.create(pod("inv", annotations={MISBEHAVE: "invalid"}))
    assert invalid.value.code == 422
    assert any(c.field.startswith("metadata.labels") for c in invalid.value.causes)
    assert not await exists(api, "inv")
    await api.create(pod("p"))
    with pytest.raises(Invalid):
        await api.patch("v1", "Pod", "p", {"metadata": {"annotations": {MISBEHAVE: "invalid"}}})
    assert MISBEHAVE not in ((await api.get("v1", "Pod", "p"))["metadata"].get("annotations") or {})


async def test_a_crashing_check_is_a_500_naming_it_and_writes_nothing(admitted):
    api, _ = admitted
    with pytest.raises(KcoreError) as crashed:
        await api.create(pod("boom", annotations={MISBEHAVE: "crash"}))
    assert crashed.value.code == 500 and crashed.value.reason == "InternalError"
    assert str(crashed.value) == (
        "admission check sample-misbehave failed: RuntimeError: crashed on purpose"
    )
    assert not await exists(api, "boom")


class Recorder:
    def __init__(self, name: str, answer=None) -> None:
        self.name = name
        self.answer = answer
        self.objects: list = []

    async def admit(self, request):
        if request.resource != "configmaps" or not request.name.startswith("cm"):
            return None
        self.objects.append(request.obj)
        if self.answer is not None:
            return self.answer(request.obj)
        request.obj["data"]["scribbled"] = "yes"  # on its own copy: changes nothing
        return None


async def test_checks_run_in_order_each_seeing_what_the_last_left():
    def rename(obj):
        return {**obj, "metadata": {**obj["metadata"], "name": "other"}}

    first = Recorder("first", answer=lambda obj: {**obj, "data": {"k": "changed"}})
    second = Recorder("second")
    renamer = Recorder("renamer", answer=rename)
    async with in_process_api(admission_checks=[first, second]) as (api, _, objects):
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm"},
            "data": {"a": "1"},
        }
        created = await api.create(cm)
        assert created["data"] == {"k": "changed"}
        assert first.objects[0]["data"] == {"a": "1"}
        assert second.objects[0]["data"]["k"] == "changed"  # and it scribbled on its copy
        assert (await api.get("v1", "ConfigMap", "cm"))["data"] == {"k": "changed"}
        objects.admission_checks.append(renamer)
        with pytest.raises(
            Invalid,
            match=r"metadata\.name: Forbidden: may not be changed by admission check renamer",
        ):
            await api.create({**cm, "metadata": {"name": "cm2"}})


# -- end to end with kubectl -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A daemon (API only) that loads the sample plugin by its dotted path."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
        )
        d = start_daemon(
            tmp_path_factory.mktemp("kcore-admission"),
            "--plugins=store_sqlite,sample_plugins.admission",
        )
    try:
        yield d
    finally:
        stop_daemon(d)


def kubectl_ok(daemon, *args: str, input: str | None = None) -> str:
    proc = daemon.kubectl(*args, input=input)
    assert proc.returncode == 0, f"kubectl {args}: {proc.stderr}"
    return proc.stdout


def kubectl_fails(daemon, *args: str, input: str | None = None) -> str:
    proc = daemon.kubectl(*args, input=input)
    assert proc.returncode != 0, f"kubectl {args} succeeded: {proc.stdout}"
    return proc.stderr


def get_pod(daemon, name: str) -> dict | None:
    proc = daemon.kubectl("get", "pod", name, "-o", "json")
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    return json.loads(proc.stdout)


def test_kubectl_sees_the_mutation_and_the_user(daemon):
    kubectl_ok(daemon, "create", "-f", "-", input=json.dumps(pod("web")))
    web = get_pod(daemon, "web")
    assert web["metadata"]["labels"][ADMITTED] == "true"
    assert web["metadata"]["annotations"][CREATED_BY] == "kcore-admin"
    kubectl_ok(daemon, "label", "pod", "web", f"{ADMITTED}-")  # an update: labelled again
    assert get_pod(daemon, "web")["metadata"]["labels"][ADMITTED] == "true"


def test_kubectl_refusal_has_the_code_and_message(daemon):
    err = kubectl_fails(daemon, "create", "-f", "-", input=json.dumps(pod("bad", "forbidden")))
    assert "Error from server (Forbidden)" in err
    assert 'pods "bad" is forbidden: image "forbidden" is not allowed (sample-image)' in err
    assert get_pod(daemon, "bad") is None
    kubectl_ok(daemon, "create", "-f", "-", input=json.dumps(pod("ok")))
    err = kubectl_fails(daemon, "set", "image", "pod/ok", "c=forbidden")
    assert 'pods "ok" is forbidden: image "forbidden" is not allowed' in err
    assert get_pod(daemon, "ok")["spec"]["containers"][0]["image"] == "busybox:1.36"


def test_kubectl_delete_is_checked(daemon):
    body = json.dumps(pod("safe", labels={PROTECTED: "true"}))
    kubectl_ok(daemon, "create", "-f", "-", input=body)
    err = kubectl_fails(daemon, "delete", "pod", "safe", "--wait=false")
    assert "Error from server (Forbidden)" in err and "the pod is protected" in err
    assert get_pod(daemon, "safe") is not None
    kubectl_ok(daemon, "label", "pod", "safe", f"{PROTECTED}-")
    kubectl_ok(daemon, "delete", "pod", "safe", "--wait=false")
    assert get_pod(daemon, "safe") is None


def test_kubectl_dry_run_is_checked_but_stores_nothing(daemon):
    out = kubectl_ok(
        daemon, "create", "-f", "-", "--dry-run=server", "-o", "json", input=json.dumps(pod("dry"))
    )
    assert json.loads(out)["metadata"]["labels"][ADMITTED] == "true"
    assert get_pod(daemon, "dry") is None
    err = kubectl_fails(
        daemon, "create", "-f", "-", "--dry-run=server", input=json.dumps(pod("dry", "forbidden"))
    )
    assert "Forbidden" in err
    assert get_pod(daemon, "dry") is None


def test_kubectl_invalid_mutation_is_a_422(daemon):
    body = json.dumps(pod("inv", annotations={MISBEHAVE: "invalid"}))
    err = kubectl_fails(daemon, "create", "-f", "-", input=body)
    assert "Invalid" in err and "metadata.labels" in err
    assert get_pod(daemon, "inv") is None


def test_kubectl_crashing_check_is_a_500_and_writes_nothing(daemon):
    body = json.dumps(pod("boom", annotations={MISBEHAVE: "crash"}))
    err = kubectl_fails(daemon, "create", "-f", "-", input=body)
    assert "Error from server (InternalError)" in err
    assert "admission check sample-misbehave failed: RuntimeError: crashed on purpose" in err
    assert get_pod(daemon, "boom") is None
    kubectl_ok(daemon, "create", "-f", "-", input=json.dumps(pod("calm")))
    err = kubectl_fails(daemon, "annotate", "pod", "calm", f"{MISBEHAVE}=crash")
    assert "InternalError" in err
    assert MISBEHAVE not in (get_pod(daemon, "calm")["metadata"].get("annotations") or {})
