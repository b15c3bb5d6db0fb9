"""The kubelet's registry credential lookup: which docker config entries apply to an image,
in which order, from the pod's image pull secrets and the node's config file."""

from __future__ import annotations

import base64
import json
import re

import pytest
from inprocess_api import in_process_api

from kcore.errors import BadRequest, Invalid, NotFound, TemporaryError
from kcore.nodeagent.credentials import (
    DOCKER_CFG,
    DOCKER_CONFIG_JSON,
    Keyring,
    image_credentials,
    pull_with_credentials,
    read_node_config,
    repository_of,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def entry(user: str, password: str = "pw") -> dict[str, str]:
    return {"auth": b64(f"{user}:{password}")}


def cred(user: str, password: str = "pw") -> dict[str, str]:
    return {"username": user, "password": password}


def users(found: list[dict[str, str]]) -> list[str]:
    return [c.get("username", "") for c in found]


@pytest.fixture
async def api():
    async with in_process_api() as (client, _store, _objects):
        yield client


async def make_secret(api, name, kind, key, payload, namespace="default"):
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": kind,
            "data": {key: b64(raw)},
        }
    )


async def dockerconfigjson(api, name, auths, namespace="default"):
    await make_secret(
        api, name, DOCKER_CONFIG_JSON, ".dockerconfigjson", {"auths": auths}, namespace
    )


def pod(*secrets: str, namespace: str = "default") -> dict:
    return {
        "metadata": {"name": "web", "namespace": namespace, "uid": "u1"},
        "spec": {
            "containers": [{"name": "app", "image": "x"}],
            "imagePullSecrets": [{"name": s} for s in secrets],
        },
    }


class Warnings(list):
    def __call__(self, reason: str, message: str) -> None:
        self.append((reason, message))


# -- which entries match which image -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "image", "matches"),
    [
        # Docker Hub and its aliases
        ("docker.io", "busybox", True),
        ("index.docker.io", "busybox", True),
        ("registry-1.docker.io", "library/busybox:1.36", True),
        ("https://index.docker.io/v1/", "docker.io/library/busybox", True),
        ("index.docker.io", "index.docker.io/team/app", True),
        ("docker.io/library", "busybox", True),
        ("docker.io/team", "busybox", False),
        ("docker.io", "quay.io/team/app", False),
        ("quay.io", "busybox", False),
        # hosts and ports
        ("registry.example", "registry.example/app", True),
        ("Registry.Example", "registry.example/app:v1", True),
        ("registry.example:5000", "registry.example:5000/app", True),
        ("registry.example:5000", "registry.example/app", False),
        ("registry.example", "registry.example:5000/app", False),
        ("registry.example:5001", "registry.example:5000/app", False),
        ("localhost:5000", "localhost:5000/app", True),
        ("[::1]:5000", "[::1]:5000/app", True),
        ("other.example", "registry.example/app", False),
        # path prefixes, schemes and /v1/, /v2/
        ("registry.example:5000/team", "registry.example:5000/team/app", True),
        ("registry.example:5000/team/", "registry.example:5000/team/app", True),
        ("registry.example:5000/team", "registry.example:5000/other/app", False),
        ("registry.example:5000/team", "registry.example:5000/teamwork/app", True),
        ("https://registry.example:5000/team", "registry.example:5000/team/app", True),
        ("http://registry.example/team", "registry.example/team/app", True),
        ("https://registry.example/v2/", "registry.example/app", True),
        ("registry.example/v1/team", "registry.example/team/app", True),
        # host globs: one label per "*"
        ("*.example.com", "reg.example.com/app", True),
        ("*.example.com", "example.com/app", False),
        ("*.example.com", "a.b.example.com/app", False),
        ("*.*.example.com", "a.b.example.com/app", True),
        ("prefix.*.io", "prefix.kubernetes.io/app", True),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io/app", True),
        ("*-good.kubernetes.io", "prefix-bad.kubernetes.io/app", False),
        ("*.example.com:5000", "reg.example.com:5000/app", True),
        ("*.example.com", "reg.example.com:5000/app", False),
        ("*.my-registry.example/images", "sub.my-registry.example/images/img", True),
        ("*.my-registry.example/images", "sub.my-registry.example/other/img", False),
    ],
)
def test_a_key_matches_an_image_as_the_kubelet_reads_it(key, image, matches):
    keyring = Keyring()
    keyring.add({key: entry("u")})
    assert (keyring.lookup(repository_of(image)) == [cred("u")]) is matches


def test_the_repository_drops_tag_and_digest():
    digest = "sha256:" + "a" * 64
    assert repository_of("busybox") == "docker.io/library/busybox"
    assert repository_of("registry.example:5000/team/app:v1") == "registry.example:5000/team/app"
    assert repository_of(f"registry.example:5000/app:v1@{digest}") == "registry.example:5000/app"
    with pytest.raises(BadRequest):
        repository_of("Not A Reference")


def test_most_specific_first():
    keyring = Keyring()
    keyring.add(
        {
            "*.example.com": entry("glob"),
            "reg.example.com": entry("host"),
            "reg.example.com/team/app": entry("app"),
            "reg.example.com/team": entry("team"),
            "*.example.com/team": entry("glob-team"),
        }
    )
    found = keyring.lookup("reg.example.com/team/app")
    assert users(found) == ["app", "team", "glob-team", "host", "glob"]
    assert users(keyring.lookup("reg.example.com/other")) == ["host", "glob"]


def test_entries_of_equal_specificity_keep_their_order():
    keyring = Keyring()
    keyring.add({"docker.io": entry("first")})
    keyring.add({"https://index.docker.io/v1/": entry("second")})
    assert users(keyring.lookup(repository_of("busybox"))) == ["first", "second"]


def test_entry_forms():
    keyring = Keyring()
    keyring.add(
        {
            "a.example": {"username": "alice", "password": "s3cret", "email": "a@x"},
            "b.example": {"auth": b64("bob:pa:ss"), "username": "ignored"},
            "c.example": {"auth": base64.b64encode(b"carol:xy").decode().rstrip("=")},
            "d.example": {"identitytoken": "tok", "username": "<token>"},
            "e.example": {"registrytoken": "bearer"},
            "f.example": {"email": "nothing@else"},
        }
    )
    assert keyring.lookup("a.example/app") == [{"username": "alice", "password": "s3cret"}]
    assert keyring.lookup("b.example/app") == [{"username": "bob", "password": "pa:ss"}]
    assert keyring.lookup("c.example/app") == [{"username": "carol", "password": "xy"}]
    assert keyring.lookup("d.example/app") == [{"username": "<token>", "identity_token": "tok"}]
    assert keyring.lookup("e.example/app") == [{"registry_token": "bearer"}]
    assert keyring.lookup("f.example/app") == []
    assert len(keyring) == 5


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"r.example": {"auth": "%%%"}}, "not base64"),
        ({"r.example": {"auth": b64("no-colon")}}, "base64(username:password)"),
        ({"r.example": "user:pw"}, "not an object"),
        ({"r.example": {"username": 7}}, "username of the entry for 'r.example'"),
        (["r.example"], "not an object"),
    ],
)
def test_a_malformed_entry_is_refused_and_adds_nothing(config, words):
    keyring = Keyring()
    keyring.add({"ok.example": entry("kept")})
    with pytest.raises(ValueError, match=re.escape(words)):
        keyring.add(config if not isinstance(config, dict) else {"x.example": entry("x"), **config})
    assert len(keyring) == 1


# -- image pull secrets through the API ----------------------------------------------------


async def test_no_secrets_and_no_node_config_means_anonymous(api, tmp_path):
    warnings = Warnings()
    found = await image_credentials(
        api, pod(), "busybox", node_config=tmp_path / "config.json", warn=warnings
    )
    assert found == []
    assert warnings == []


async def test_both_secret_types(api):
    await dockerconfigjson(api, "new", {"registry.example:5000": entry("json")})
    await make_secret(
        api, "old", DOCKER_CFG, ".dockercfg", {"https://registry.example:5000": entry("cfg")}
    )
    found = await image_credentials(
        api, pod("new", "old"), "registry.example:5000/app:v1", node_config=None, warn=Warnings()
    )
    assert users(found) == ["json", "cfg"]
    found = await image_credentials(
        api, pod("old", "new"), "registry.example:5000/app:v1", node_config=None, warn=Warnings()
    )
    assert users(found) == ["cfg", "json"]


async def test_secrets_are_read_from_the_pods_namespace(api):
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    await dockerconfigjson(api, "regcred", {"r.example": entry("team")}, namespace="team")
    await dockerconfigjson(api, "regcred", {"r.example": entry("default")})
    found = await image_credentials(
        api, pod("regcred", namespace="team"), "r.example/app", node_config=None, warn=Warnings()
    )
    assert users(found) == ["team"]


async def test_specificity_spans_secrets(api):
    await dockerconfigjson(api, "host", {"r.example": entry("host")})
    await dockerconfigjson(api, "team", {"r.example/team": entry("team")})
    found = await image_credentials(
        api, pod("host", "team"), "r.example/team/app", node_config=None, warn=Warnings()
    )
    assert users(found) == ["team", "host"]


async def test_a_missing_secret_is_skipped_with_the_kubelets_warning(api):
    await dockerconfigjson(api, "present", {"r.example": entry("present")})
    warnings = Warnings()
    found = await image_credentials(
        api,
        pod("gone", "present", "also-gone", ""),
        "r.example/app",
        node_config=None,
        warn=warnings,
    )
    assert users(found) == ["present"]
    assert warnings == [
        (
            "FailedToRetrieveImagePullSecret",
            "Unable to retrieve some image pull secrets (gone, also-gone); attempting to pull "
            "the image may not succeed.",
        )
    ]


async def test_other_secret_types_are_ignored(api):
    await make_secret(api, "opaque", "Opaque", ".dockerconfigjson", {"auths": {}})
    await make_secret(api, "wrongkey", DOCKER_CFG, ".dockercfg", {"r.example": entry("cfg")})
    warnings = Warnings()
    found = await image_credentials(
        api, pod("opaque", "wrongkey"), "r.example/app", node_config=None, warn=warnings
    )
    assert users(found) == ["cfg"]
    assert warnings == []


@pytest.mark.parametrize(
    ("kind", "key", "payload", "words"),
    [
        (DOCKER_CONFIG_JSON, ".dockerconfigjson", "[1, 2]", "is not an object"),
        (DOCKER_CONFIG_JSON, ".dockerconfigjson", {"auths": ["r.example"]}, "not an object"),
        (DOCKER_CFG, ".dockercfg", {"r.example": {"auth": "###"}}, "not base64"),
        (DOCKER_CFG, ".dockercfg", {"r.example": {"auth": b64("nocolon")}}, "username:password"),
    ],
)
async def test_a_malformed_secret_fails_the_lookup_clearly(api, kind, key, payload, words):
    # (a value that is not JSON at all cannot be stored: the API server refuses it)
    await make_secret(api, "broken", kind, key, payload)
    with pytest.raises(Invalid) as info:
        await image_credentials(
            api, pod("broken"), "r.example/app", node_config=None, warn=Warnings()
        )
    message = str(info.value)
    assert message.startswith(f'image pull secret "broken" ({kind}): ')
    assert words in message


async def test_an_invalid_image_reference_is_a_bad_request(api):
    with pytest.raises(BadRequest):
        await image_credentials(api, pod(), "UPPER/case", node_config=None, warn=Warnings())


class FailingApi:
    async def get(self, *args):
        raise TemporaryError("apiserver unavailable")


async def test_a_secret_the_api_cannot_serve_counts_as_missing():
    warnings = Warnings()
    found = await image_credentials(
        FailingApi(), pod("regcred"), "r.example/app", node_config=None, warn=warnings
    )
    assert found == []
    assert [w[0] for w in warnings] == ["FailedToRetrieveImagePullSecret"]


# -- the node's docker config file ---------------------------------------------------------


async def test_node_config_comes_after_the_pods_secrets(api, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {"r.example/team": entry("node-team"), "r.example": entry("pod")},
                "credsStore": "desktop",
            }
        )
    )
    await dockerconfigjson(api, "regcred", {"r.example": entry("pod")})
    found = await image_credentials(
        api, pod("regcred"), "r.example/team/app", node_config=config, warn=Warnings()
    )
    assert users(found) == ["pod", "node-team"]  # the same credential is tried once


def test_node_config_forms(tmp_path):
    legacy = tmp_path / ".dockercfg"
    legacy.write_text(json.dumps({"https://index.docker.io/v1/": entry("hub")}))
    assert users(read_node_config(legacy).lookup(repository_of("busybox"))) == ["hub"]
    helpers_only = tmp_path / "helpers.json"
    helpers_only.write_text(json.dumps({"credsStore": "desktop", "credHelpers": {}}))
    assert len(read_node_config(helpers_only)) == 0
    assert len(read_node_config(tmp_path / "missing.json")) == 0
    assert len(read_node_config(None)) == 0


@pytest.mark.parametrize(
    "content",
    ["{broken", "[]", json.dumps({"auths": {"r.example": {"auth": "!!"}}}), "\xff"],
)
async def test_a_malformed_node_config_is_ignored(api, tmp_path, content):
    config = tmp_path / "config.json"
    config.write_bytes(content.encode("latin-1"))
    await dockerconfigjson(api, "regcred", {"r.example": entry("pod")})
    found = await image_credentials(
        api, pod("regcred"), "r.example/app", node_config=config, warn=Warnings()
    )
    assert users(found) == ["pod"]


def test_a_node_config_that_is_a_directory_is_ignored(tmp_path):
    assert len(read_node_config(tmp_path)) == 0


# -- trying each credential ----------------------------------------------------------------


class Images:
    """Answers pulls by the username: ``good`` works, others fail with their message."""

    def __init__(self, failures: dict[str | None, Exception] | None = None) -> None:
        self.calls: list[dict[str, str] | None] = []
        self.failures = failures or {}

    async def pull_image(self, image, auth=None):
        self.calls.append(auth)
        user = (auth or {}).get("username")
        if user in self.failures:
            raise self.failures[user]
        return "sha256:" + "1" * 64


async def test_pull_tries_each_credential_until_one_works():
    images = Images({"a": NotFound("unauthorized"), "b": NotFound("denied")})
    ref = await pull_with_credentials(images, "r.example/app", [cred("a"), cred("good"), cred("b")])
    assert ref == "sha256:" + "1" * 64
    assert users(images.calls) == ["a", "good"]


async def test_pull_without_credentials_is_anonymous():
    images = Images()
    await pull_with_credentials(images, "busybox", [])
    assert images.calls == [None]


async def test_when_every_credential_fails_the_errors_are_aggregated():
    images = Images({"a": NotFound("unauthorized: a"), "b": TemporaryError("timeout")})
    with pytest.raises(TemporaryError) as info:
        await pull_with_credentials(images, "r.example/app", [cred("a"), cred("b")])
    assert str(info.value) == "[unauthorized: a, timeout]"
    assert users(images.calls) == ["a", "b"]  # no anonymous attempt after them


async def test_one_failure_or_the_same_failure_is_the_error_itself():
    only = NotFound("unauthorized")
    with pytest.raises(NotFound) as info:
        await pull_with_credentials(Images({"a": only}), "r.example/app", [cred("a")])
    assert info.value is only
    images = Images({"a": NotFound("unauthorized"), "b": NotFound("unauthorized")})
    with pytest.raises(NotFound) as info:
        await pull_with_credentials(images, "r.example/app", [cred("a"), cred("b")])
    assert str(info.value) == "unauthorized"
