"""Pulling from Debian's docker-registry on loopback: by tag and digest, OCI and Docker
manifests, indexes, gzip/zstd/plain layers, shared layers, and every kind of auth and TLS."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from kcore.errors import Forbidden, NotFound, NotSupported, PermanentError
from kcore.images import ImageStore
from kcore.registry import (
    PullProgress,
    Reference,
    RegistryConfig,
    choose_manifest,
    host_platform,
    parse_challenge,
    pull,
)

from .conftest import PASSWORD, USER, Pushed, TokenAuth
from .servers import Certs, Registry


def snapshot(store: ImageStore) -> tuple[list[dict], list[str]]:
    """The images and the unpacked layers: what a failed pull must leave as it was."""
    layers = store.root / "layers" / "sha256"
    return store.list(), sorted(os.listdir(layers)) if layers.is_dir() else []


# --------------------------------------------------------------------------- by tag, digest


async def test_pull_by_tag_then_status_by_every_name(store, config, plain_registry, pushed):
    ref = f"{plain_registry.host}/test/busybox:1"
    events: list[PullProgress] = []
    result = await pull(store, ref, config=config, progress=events.append)
    image = result.image
    assert image["id"] == pushed.busybox.id
    assert result.digest == pushed.busybox.manifest_digest
    assert image["repo_tags"] == [ref]
    repo_digest = f"{plain_registry.host}/test/busybox@{pushed.busybox.manifest_digest}"
    assert image["repo_digests"] == [repo_digest]
    assert result.layers_downloaded == 1
    assert result.bytes_downloaded == pushed.busybox.layers[0]["size"]
    for name in (ref, repo_digest, image["id"], image["id"][7:19]):
        assert store.status(name)["id"] == image["id"], name
    (layer,) = store.layer_dirs(image["id"])
    assert (layer / "bin" / "busybox").is_file()
    statuses = [e.status for e in events]
    assert statuses[0] == "waiting" and "downloading" in statuses and statuses[-1] == "done"
    assert not list(store.download_dir.iterdir()), "downloads are removed once imported"


async def test_pull_by_digest_records_the_digest_not_a_tag(store, config, plain_registry, pushed):
    ref = f"{plain_registry.host}/test/busybox@{pushed.busybox.manifest_digest}"
    result = await pull(store, ref, config=config)
    assert result.image["id"] == pushed.busybox.id
    assert result.image["repo_tags"] == []
    assert result.image["repo_digests"] == [ref]
    assert store.status(ref)["id"] == pushed.busybox.id


async def test_a_tag_and_a_digest_the_digest_wins(store, config, plain_registry, pushed):
    ref = f"{plain_registry.host}/test/busybox:nonexistent@{pushed.busybox.manifest_digest}"
    result = await pull(store, ref, config=config)
    assert result.image["id"] == pushed.busybox.id


async def test_docker_schema2_manifest(store, config, plain_registry, pushed):
    ref = f"{plain_registry.host}/test/docker:1"
    result = await pull(store, ref, config=config)
    assert result.digest == pushed.docker_digest != pushed.busybox.manifest_digest
    assert result.image["id"] == pushed.busybox.id


async def test_index_resolves_to_this_architecture(store, config, plain_registry, pushed):
    ref = f"{plain_registry.host}/test/multi:1"
    result = await pull(store, ref, config=config)
    assert result.image["id"] == pushed.multi.id  # this arch's image, listed second
    assert result.digest == pushed.multi_index_digest
    assert result.image["repo_digests"] == [
        f"{plain_registry.host}/test/multi@{pushed.multi_index_digest}"
    ]
    assert store.status(f"{plain_registry.host}/test/multi@{pushed.multi_index_digest}")
    # The index is kept with the image and goes with it.
    blob = store.root / "blobs" / "sha256" / pushed.multi_index_digest[7:]
    assert blob.is_file()
    store.remove(result.image["id"])
    assert not blob.exists()


async def test_zstd_and_uncompressed_layers(store, config, plain_registry, pushed):
    zstd = await pull(store, f"{plain_registry.host}/test/zstd:1", config=config)
    assert zstd.image["id"] == pushed.zstd_id
    (layer,) = store.layer_dirs(zstd.image["id"])
    assert (layer / "bin" / "busybox").is_file()
    raw = await pull(store, f"{plain_registry.host}/test/raw:1", config=config)
    assert raw.image["id"] == pushed.raw.id
    assert store.layer_dirs(raw.image["id"])[0].joinpath("bin", "busybox").is_file()


async def test_shared_layers_are_not_downloaded_again(store, config, plain_registry, pushed):
    one, two = pushed.shared
    first = await pull(store, f"{plain_registry.host}/test/shared:1", config=config)
    assert first.layers_downloaded == 2
    events: list[PullProgress] = []
    second = await pull(
        store, f"{plain_registry.host}/test/shared:2", config=config, progress=events.append
    )
    assert second.image["id"] == two.id
    assert second.layers_downloaded == 1
    assert second.bytes_downloaded == two.layers[1]["size"]
    base_label = two.layers[0]["digest"][7:19]
    assert [e.status for e in events if e.layer == base_label] == ["exists"]
    again = await pull(store, f"{plain_registry.host}/test/shared:2", config=config)
    assert again.layers_downloaded == 0 and again.bytes_downloaded == 0
    assert [i["id"] for i in store.list()] == [one.id, two.id]


async def test_a_moved_tag_moves_to_the_new_image(store, config, plain_registry, pushed):
    """Re-pulling a tag that now names another image moves the tag, as Docker does."""
    await pull(store, f"{plain_registry.host}/test/busybox:1", config=config)
    await pull(store, f"{plain_registry.host}/test/shared:1", config=config)
    store.tag(f"{plain_registry.host}/test/shared:1", "kcore.test/moving:1")
    assert store.local_image("kcore.test/moving:1") is not None
    assert store.local_image(f"{plain_registry.host}/test/shared:1") is None  # pulled


async def test_not_found(store, config, plain_registry, pushed):
    before = snapshot(store)
    with pytest.raises(NotFound, match="manifest unknown"):
        await pull(store, f"{plain_registry.host}/test/busybox:nope", config=config)
    with pytest.raises(NotFound, match="unknown"):
        await pull(store, f"{plain_registry.host}/test/nothing-here:1", config=config)
    with pytest.raises(NotFound):
        await pull(store, f"{plain_registry.host}/test/busybox@sha256:{'0' * 64}", config=config)
    assert snapshot(store) == before


async def test_index_without_this_platform(store, fake, fake_config, pushed):
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    **pushed.busybox.descriptor(),
                    "platform": {"os": "windows", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    fake.add("x/y", "ignored", pushed.busybox)
    fake.add_manifest("x/y", "1", index, "application/vnd.oci.image.index.v1+json")
    with pytest.raises(NotSupported, match="windows/amd64"):
        await pull(store, f"{fake.host}/x/y:1", config=fake_config)
    assert store.list() == []


# --------------------------------------------------------------------------- auth


async def test_basic_auth(store, basic_registry: Registry, pushed: Pushed):
    config = RegistryConfig.from_options(insecure=[basic_registry.host], attempts=1)
    ref = f"{basic_registry.host}/test/busybox:1"
    before = snapshot(store)
    with pytest.raises(Forbidden, match=r"pull access denied.*authorization failed"):
        await pull(store, ref, config=config)
    with pytest.raises(Forbidden, match="authorization failed"):
        await pull(store, ref, config=config, auth={"username": USER, "password": "wrong"})
    assert snapshot(store) == before
    result = await pull(store, ref, config=config, auth={"username": USER, "password": PASSWORD})
    assert result.image["id"] == pushed.busybox.id
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    result = await pull(store, ref, config=config, auth={"auth": encoded})
    assert result.image["id"] == pushed.busybox.id


async def test_node_level_credentials_from_an_auth_file(
    store, basic_registry: Registry, pushed: Pushed, tmp_path: Path
):
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth_file = tmp_path / "config.json"
    auth_file.write_text(
        json.dumps({"auths": {f"http://{basic_registry.host}/": {"auth": encoded}}})
    )
    config = RegistryConfig.from_options(insecure=[basic_registry.host], auth_file=auth_file)
    result = await pull(store, f"{basic_registry.host}/test/busybox:1", config=config)
    assert result.image["id"] == pushed.busybox.id


async def test_bearer_token_flow(store, token_registry: TokenAuth, pushed: Pushed):
    registry = token_registry.registry
    config = RegistryConfig.from_options(insecure=[registry.host], attempts=1)
    ref = f"{registry.host}/test/busybox:1"
    with pytest.raises(Forbidden, match="authorization failed"):
        await pull(store, ref, config=config)
    assert store.list() == []
    token_registry.requests.clear()
    result = await pull(store, ref, config=config, auth={"username": USER, "password": PASSWORD})
    assert result.image["id"] == pushed.busybox.id
    (asked,) = token_registry.requests  # one token serves every request of the pull
    assert asked["scope"] == "repository:test/busybox:pull"
    assert asked["service"] == "kcore-test-registry"
    assert asked["authorization"].startswith("Basic ")


async def test_registry_token_is_used_as_it_is(store, token_registry: TokenAuth, pushed: Pushed):
    registry = token_registry.registry
    config = RegistryConfig.from_options(insecure=[registry.host], attempts=1)
    token = token_registry.signer.token("kcore-test-registry", "repository:test/busybox:pull")
    token_registry.requests.clear()
    result = await pull(
        store, f"{registry.host}/test/busybox:1", config=config, auth={"registry_token": token}
    )
    assert result.image["id"] == pushed.busybox.id
    assert token_registry.requests == []


async def test_bearer_challenge_on_a_fake_registry(store, pushed, tmp_path):
    """The token realm gets the credentials, the registry only the token."""
    from .fakeregistry import FakeRegistry

    fake = FakeRegistry(auth="bearer", user=USER, password=PASSWORD).start()
    try:
        fake.add("team/app", "1", pushed.busybox)
        config = RegistryConfig.from_options(insecure=[fake.host], attempts=1)
        result = await pull(
            store,
            f"{fake.host}/team/app:1",
            config=config,
            auth={"username": USER, "password": PASSWORD},
        )
        assert result.image["id"] == pushed.busybox.id
        assert fake.token_requests[0]["service"] == "fake"
        for seen in fake.requests(r"/v2/team/app/"):
            assert seen.headers.get("Authorization", "").startswith("Bearer "), seen
    finally:
        fake.stop()


async def test_identity_token_is_exchanged_at_the_realm(store, pushed):
    from .fakeregistry import FakeRegistry

    fake = FakeRegistry(auth="bearer").start()
    try:
        fake.add("team/app", "1", pushed.busybox)
        config = RegistryConfig.from_options(insecure=[fake.host], attempts=1)
        ref = f"{fake.host}/team/app:1"
        with pytest.raises(Forbidden, match="authorization failed"):
            await pull(store, ref, config=config, auth={"identity_token": "wrong"})
        result = await pull(
            store,
            ref,
            config=config,
            auth={"identity_token": fake.refresh_token, "server_address": fake.host},
        )
        assert result.image["id"] == pushed.busybox.id
        asked = fake.token_requests[-1]
        assert asked["method"] == "POST" and asked["scope"] == "repository:team/app:pull"
    finally:
        fake.stop()


# --------------------------------------------------------------------------- TLS


async def test_tls_with_a_custom_ca(store, tls_registry: Registry, certs: Certs, pushed: Pushed):
    ref = f"{tls_registry.host}/test/busybox:1"
    with pytest.raises(PermanentError, match=r"certificate not trusted.*--registry-ca"):
        await pull(store, ref, config=RegistryConfig(attempts=1))
    config = RegistryConfig.from_options(ca=[f"{tls_registry.host}={certs.ca}"])
    result = await pull(store, ref, config=config)
    assert result.image["id"] == pushed.busybox.id


async def test_insecure_tls_registry_skips_verification(
    store, tls_registry: Registry, pushed: Pushed
):
    config = RegistryConfig.from_options(insecure=[tls_registry.host])
    result = await pull(store, f"{tls_registry.host}/test/busybox:1", config=config)
    assert result.image["id"] == pushed.busybox.id


async def test_plain_http_only_when_listed_insecure(store, plain_registry: Registry, pushed):
    ref = f"{plain_registry.host}/test/busybox:1"
    with pytest.raises(PermanentError, match=f"--registry-insecure {plain_registry.host}"):
        await pull(store, ref, config=RegistryConfig(attempts=1))
    assert store.list() == []
    # A host without a port stands for every port of it.
    result = await pull(store, ref, config=RegistryConfig.from_options(insecure="127.0.0.1"))
    assert result.image["id"] == pushed.busybox.id


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("ref", "registry", "path", "tag", "digest", "endpoint"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None, "registry-1.docker.io"),
        ("quay.io/a/b:2", "quay.io", "a/b", "2", None, "quay.io"),
        (
            "localhost:5000/x@sha256:" + "a" * 64,
            "localhost:5000",
            "x",
            None,
            "sha256:" + "a" * 64,
            "localhost:5000",
        ),
    ],
)
def test_reference(ref, registry, path, tag, digest, endpoint):
    r = Reference.parse(ref)
    assert (r.registry, r.path, r.digest, r.endpoint) == (registry, path, digest, endpoint)
    assert r.tag == (None if digest else tag)
    assert r.reference == (digest or tag)


def test_parse_challenge():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_choose_manifest_prefers_the_variant():
    _, arch, variant = host_platform()
    children = [
        {"digest": "a", "platform": {"os": "linux", "architecture": "s390x"}},
        {"digest": "b", "platform": {"os": "linux", "architecture": arch, "variant": "zz"}},
        {"digest": "c", "platform": {"os": "linux", "architecture": arch, "variant": variant}},
    ]
    assert choose_manifest({"manifests": children}, "x")["digest"] == "c"
    with pytest.raises(NotSupported, match="linux/s390x"):
        choose_manifest({"manifests": children[:1]}, "x")


def test_registry_config_from_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = RegistryConfig.from_options(
        insecure=["a:5000,b", "c"], ca=[f"d:443={ca}"], read_timeout=3
    )
    assert config.insecure == {"a:5000", "b", "c"}
    assert config.is_insecure("a:5000") and config.is_insecure("b:1234")
    assert not config.is_insecure("a:5001")
    assert config.ca_file("d:443") == ca and config.ca_file("d:444") is None
    assert config.read_timeout == 3
    from kcore.errors import BadRequest

    with pytest.raises(BadRequest, match="HOST"):
        RegistryConfig.from_options(ca=["nothing"])
    with pytest.raises(BadRequest, match="not a file"):
        RegistryConfig.from_options(ca=[f"d={tmp_path / 'absent'}"])


def test_cri_auth_config_keys():
    from kcore.errors import BadRequest
    from kcore.registry import _Credentials

    encoded = base64.b64encode(b"bob:pw1").decode()  # "Ym9iOnB3MQ==", padded
    creds = _Credentials.from_auth({"auth": encoded.rstrip("="), "username": "ignored"})
    assert (creds.username, creds.password) == ("bob", "pw1")
    creds = _Credentials.from_auth({"identityToken": "it", "registry_token": "rt"})
    assert (creds.identity_token, creds.registry_token) == ("it", "rt")
    assert not _Credentials.from_auth({"server_address": "x"})
    with pytest.raises(BadRequest, match="base64"):
        _Credentials.from_auth({"auth": "!!!"})
