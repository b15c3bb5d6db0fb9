"""projected volumes: sources together on a tmpfs, and service account tokens from an
injectable token source, reused until 80 % of their lifetime."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kcore.conformance.suites.volumes import (
    NAMESPACE,
    FakeApi,
    make_pod,
    mounts_under,
    unmount_below,
    visible_files,
)
from kcore.errors import Invalid, NotFound, NotSupported
from kcore.plugins.volumes import ProjectedSource
from kcore.plugins.volumes.atomic_writer import DATA_DIR

ALLOCATABLE = {"cpu": "2", "memory": "64Mi"}
OBJECTS = [
    {
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": NAMESPACE},
        "data": {"ca.crt": "CA"},
    },
    {
        "kind": "Secret",
        "metadata": {"name": "sec", "namespace": NAMESPACE},
        "data": {"key": base64.b64encode(b"KEY").decode()},
    },
]


class Tokens:
    """A token source: answers each TokenRequest with a new token, as the API server
    would, and keeps the requests; ``lifetime`` caps the expiration it grants."""

    def __init__(self, clock: list[float], lifetime: int | None = None) -> None:
        self.clock, self.lifetime, self.requests = clock, lifetime, []

    async def __call__(self, api, namespace, service_account, request):
        self.requests.append((namespace, service_account, request))
        seconds = min(request["spec"]["expirationSeconds"], self.lifetime or 1 << 40)
        expires = datetime.fromtimestamp(self.clock[0] + seconds, UTC)
        return {
            "spec": {**request["spec"], "expirationSeconds": seconds},
            "status": {
                "token": f"token-{len(self.requests)}",
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }


@pytest.fixture
def target(tmp_path: Path):
    path = tmp_path / "vol"
    path.mkdir()
    try:
        yield path
    finally:
        unmount_below(tmp_path)


@pytest.fixture
def clock() -> list[float]:
    return [1_700_000_000.0]


def source_with(tokens: Tokens, clock: list[float]) -> ProjectedSource:
    return ProjectedSource(ALLOCATABLE, token_source=tokens, clock=lambda: clock[0])


def projected(*sources: dict, **extra) -> dict:
    return {"name": "kube-api-access-abcde", "projected": {"sources": list(sources), **extra}}


TOKEN = {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}


async def test_the_service_account_volume_of_kubernetes(target, clock):
    tokens = Tokens(clock)
    pod = make_pod()
    pod["spec"]["serviceAccountName"] = "builder"
    volume = projected(
        TOKEN,
        {"configMap": {"name": "cm", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "downwardAPI": {
                "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
            }
        },
        {"secret": {"name": "sec", "items": [{"key": "key", "path": "tls/key", "mode": 0o400}]}},
        defaultMode=420,
    )
    await source_with(tokens, clock).setup(pod, volume, target, FakeApi(OBJECTS))
    assert visible_files(target) == {
        "token": b"token-1",
        "ca.crt": b"CA",
        "namespace": NAMESPACE.encode(),
        "tls/key": b"KEY",
    }
    assert os.stat(target / "token").st_mode & 0o777 == 0o644
    assert os.stat(target / "tls/key").st_mode & 0o777 == 0o400
    assert [fs for _, fs in mounts_under(target)] == ["tmpfs"]
    ((namespace, account, request),) = tokens.requests
    assert (namespace, account) == (NAMESPACE, "builder")
    assert request["kind"] == "TokenRequest"
    assert request["spec"]["audiences"] == []
    assert request["spec"]["expirationSeconds"] == 3607
    assert request["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "volumes",
        "uid": pod["metadata"]["uid"],
    }


async def test_token_defaults_audience_and_minimum(target, clock):
    tokens = Tokens(clock)
    volume = projected({"serviceAccountToken": {"path": "t", "audience": "vault"}})
    await source_with(tokens, clock).setup(make_pod(), volume, target, None)
    request = tokens.requests[0][2]
    assert request["spec"]["expirationSeconds"] == 3600
    assert request["spec"]["audiences"] == ["vault"]
    short = projected({"serviceAccountToken": {"path": "t", "expirationSeconds": 599}})
    with pytest.raises(Invalid, match="less than 10 minutes"):
        await source_with(tokens, clock).setup(make_pod(), short, target, None)


async def test_token_is_reused_until_80_percent_of_its_life(target, clock):
    tokens = Tokens(clock)
    source, pod, volume = source_with(tokens, clock), make_pod(), projected(TOKEN)
    await source.setup(pod, volume, target, None)
    version = os.readlink(target / DATA_DIR)
    clock[0] += 0.79 * 3607
    await source.setup(pod, volume, target, None)
    assert len(tokens.requests) == 1
    assert os.readlink(target / DATA_DIR) == version, "a reused token rewrote the volume"
    clock[0] += 0.02 * 3607
    await source.setup(pod, volume, target, None)
    assert len(tokens.requests) == 2
    assert (target / "token").read_bytes() == b"token-2"


async def test_token_lifetime_is_the_one_the_server_granted(target, clock):
    tokens = Tokens(clock, lifetime=1000)
    source, pod = source_with(tokens, clock), make_pod()
    volume = projected({"serviceAccountToken": {"path": "t", "expirationSeconds": 7200}})
    await source.setup(pod, volume, target, None)
    clock[0] += 801
    await source.setup(pod, volume, target, None)
    assert len(tokens.requests) == 2


async def test_a_long_token_is_refreshed_after_a_day(target, clock):
    tokens = Tokens(clock)
    source, pod = source_with(tokens, clock), make_pod()
    volume = projected({"serviceAccountToken": {"path": "t", "expirationSeconds": 7 * 86400}})
    await source.setup(pod, volume, target, None)
    clock[0] += 86400 - 1
    await source.setup(pod, volume, target, None)
    assert len(tokens.requests) == 1
    clock[0] += 2
    await source.setup(pod, volume, target, None)
    assert len(tokens.requests) == 2


async def test_teardown_forgets_the_pods_tokens(target, clock):
    tokens = Tokens(clock)
    source, pod, volume = source_with(tokens, clock), make_pod(), projected(TOKEN)
    await source.setup(pod, volume, target, None)
    await source.teardown(pod, volume, target)
    assert not target.exists() and mounts_under(target) == []
    target.mkdir()
    await source.setup(pod, volume, target, None)
    assert len(tokens.requests) == 2


async def test_default_token_source_uses_the_api_clients_create_token(target):
    class Api(FakeApi):
        async def create_token(self, service_account, token_request, *, namespace):
            assert (service_account, namespace) == ("default", NAMESPACE)
            return {"status": {"token": "from-api"}}

    await ProjectedSource(ALLOCATABLE).setup(make_pod(), projected(TOKEN), target, Api())
    assert (target / "token").read_bytes() == b"from-api"


async def test_default_token_source_without_create_token_says_so(target):
    with pytest.raises(NotSupported, match="token_source"):
        await ProjectedSource(ALLOCATABLE).setup(make_pod(), projected(TOKEN), target, FakeApi())
    assert mounts_under(target) == []


async def test_missing_objects_optional_and_required(target):
    source = ProjectedSource(ALLOCATABLE)
    volume = projected(
        {"configMap": {"name": "absent", "optional": True}}, {"secret": {"name": "sec"}}
    )
    await source.setup(make_pod(), volume, target, FakeApi(OBJECTS))
    assert visible_files(target) == {"key": b"KEY"}
    with pytest.raises(NotFound, match=r'^secret "absent" not found$'):
        await source.setup(make_pod(), projected({"secret": {"name": "absent"}}), target, FakeApi())


@pytest.mark.parametrize(
    ("projection", "error"),
    [
        ({"clusterTrustBundle": {"name": "b", "path": "b"}}, NotSupported),
        ({"configMap": {"name": "cm"}, "secret": {"name": "sec"}}, Invalid),
        ({"serviceAccountToken": {"expirationSeconds": 3600}}, Invalid),
        ({"serviceAccountToken": {"path": "/etc/token"}}, Invalid),
    ],
)
async def test_bad_projections(target, clock, projection, error):
    with pytest.raises(error):
        await source_with(Tokens(clock), clock).setup(
            make_pod(), projected(projection), target, FakeApi(OBJECTS)
        )
    assert mounts_under(target) == []
