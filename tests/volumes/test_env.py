"""Container environments: envFrom, env, valueFrom, ``$(VAR)`` and the kubelet's
messages for what is missing."""

from __future__ import annotations

import base64

import pytest

from kcore.conformance.suites.volumes import NAMESPACE, FakeApi, make_pod
from kcore.errors import NotFound
from kcore.pods.env import expand, expand_args, resolve_env

ALLOCATABLE = {"cpu": "4", "memory": "1Gi"}


def config_map(name: str, data: dict) -> dict:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}, "data": data}


def secret(name: str, data: dict) -> dict:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE}, "data": encoded}


API = FakeApi(
    [
        config_map("settings", {"MODE": "fast", "LEVEL": "3"}),
        secret("creds", {"USER": "admin", "PASS": "pw"}),
    ]
)


def as_dict(env: list[dict]) -> dict[str, str]:
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate names in {names}"
    return {e["name"]: e["value"] for e in env}


async def resolve(container: dict, pod: dict | None = None, api=API, **kw) -> dict[str, str]:
    pod = pod or make_pod()
    env = await resolve_env(pod, container, api, node_allocatable=ALLOCATABLE, **kw)
    return as_dict(env)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)", "a"),
        ("___$(B)___", "___b___"),
        ("$(A)-$(A)$(B)", "a-ab"),
        ("$A", "$A"),
        ("$$(A)", "$(A)"),
        ("$$$$$(A)", "$$a"),
        ("$(A", "$(A"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$()", "$()"),
        ("end$", "end$"),
        ("$(A_$(B))", "$(A_$(B))"),
        ("no refs", "no refs"),
        ("", ""),
    ],
)
def test_expansion_follows_kubernetes(text, expanded):
    assert expand(text, {"A": "a"}, {"B": "b", "A": "shadowed"}) == expanded


async def test_env_from_with_prefix_then_env_overrides():
    container = {
        "envFrom": [
            {"configMapRef": {"name": "settings"}},
            {"prefix": "DB_", "secretRef": {"name": "creds"}},
        ],
        "env": [{"name": "MODE", "value": "slow"}, {"name": "URL", "value": "$(DB_USER)@$(MODE)"}],
    }
    assert await resolve(container) == {
        "MODE": "slow",
        "LEVEL": "3",
        "DB_USER": "admin",
        "DB_PASS": "pw",
        "URL": "admin@slow",
    }


async def test_a_reference_to_a_later_variable_stays_literal():
    container = {
        "env": [
            {"name": "A", "value": "$(B)"},
            {"name": "B", "value": "b"},
            {"name": "C", "value": "$(B)"},
        ]
    }
    assert await resolve(container) == {"A": "$(B)", "B": "b", "C": "b"}


async def test_value_from_config_maps_secrets_fields_and_resources():
    pod = make_pod({"app": "web"})
    pod["spec"]["containers"].append({"name": "side", "resources": {"limits": {"memory": "32Mi"}}})
    container = pod["spec"]["containers"][0]
    container["env"] = [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASS"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {
            "name": "CPU",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
        },
        {"name": "MEM_NODE", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
        {
            "name": "SIDE_MEM",
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": "side",
                    "resource": "limits.memory",
                    "divisor": "1Mi",
                }
            },
        },
        {
            "name": "SIDE_CPU",
            "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.cpu"}},
        },
        {"name": "EMPTY", "value": ""},
    ]
    env = await resolve(container, pod, pod_ips=["10.1.0.4", "fd00::4"], host_ips=["192.0.2.9"])
    assert env == {
        "MODE": "fast",
        "PASS": "pw",
        "NODE": "node-1",
        "SA": "default",
        "POD_IP": "10.1.0.4",
        "POD_IPS": "10.1.0.4,fd00::4",
        "HOST_IP": "192.0.2.9",
        "APP": "web",
        "NS": NAMESPACE,
        "CPU": "500",
        "MEM_NODE": str(32 << 20),
        "SIDE_MEM": "32",
        "SIDE_CPU": "4",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
        (
            {"configMapKeyRef": {"name": "settings", "key": "k"}},
            f"couldn't find key k in ConfigMap {NAMESPACE}/settings",
        ),
        ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
        (
            {"secretKeyRef": {"name": "creds", "key": "k"}},
            f"couldn't find key k in Secret {NAMESPACE}/creds",
        ),
    ],
)
async def test_missing_required_sources_have_the_kubelets_messages(env, message):
    with pytest.raises(NotFound) as caught:
        await resolve({"env": [{"name": "X", "valueFrom": env}]})
    assert str(caught.value) == message
    optional = {kind: {**ref, "optional": True} for kind, ref in env.items()}
    assert await resolve({"env": [{"name": "X", "valueFrom": optional}]}) == {}


async def test_env_from_missing_sources():
    with pytest.raises(NotFound, match=r'^configmap "nope" not found$'):
        await resolve({"envFrom": [{"configMapRef": {"name": "nope"}}]})
    with pytest.raises(NotFound, match=r'^secret "nope" not found$'):
        await resolve({"envFrom": [{"secretRef": {"name": "nope"}}]})
    container = {
        "envFrom": [
            {"configMapRef": {"name": "nope", "optional": True}},
            {"secretRef": {"name": "nope", "optional": True}},
        ]
    }
    assert await resolve(container) == {}


async def test_env_from_keys_that_cannot_be_names_are_skipped_with_a_warning():
    api = FakeApi(
        [config_map("odd", {"GOOD": "1", "has=equals": "2", "tab\there": "3", "1.dots-ok": "4"})]
    )
    warnings = []
    env = await resolve(
        {"envFrom": [{"configMapRef": {"name": "odd"}}]},
        api=api,
        warn=lambda reason, message: warnings.append((reason, message)),
    )
    assert env == {"GOOD": "1", "1.dots-ok": "4"}
    assert warnings == [
        (
            "InvalidEnvironmentVariableNames",
            f"Keys [has=equals, tab\there] from the EnvFrom configMap {NAMESPACE}/odd were "
            "skipped since they are considered invalid environment variable names.",
        )
    ]


async def test_service_variables_expand_and_come_last_unless_defined():
    services = {"WEB_SERVICE_HOST": "10.96.0.10", "MODE": "from-service"}
    container = {
        "env": [
            {"name": "MODE", "value": "mine"},
            {"name": "URL", "value": "http://$(WEB_SERVICE_HOST)"},
        ]
    }
    env = await resolve_env(
        make_pod(), container, API, node_allocatable=ALLOCATABLE, service_env=services
    )
    assert env == [
        {"name": "MODE", "value": "mine"},
        {"name": "URL", "value": "http://10.96.0.10"},
        {"name": "WEB_SERVICE_HOST", "value": "10.96.0.10"},
    ]


async def test_each_object_is_read_once():
    class CountingApi(FakeApi):
        gets = 0

        async def get(self, *args, **kw):
            self.gets += 1
            return await super().get(*args, **kw)

    api = CountingApi(API.objects.values())
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
        ],
    }
    await resolve(container, api=api)
    assert api.gets == 1


def test_expand_args_uses_the_final_environment():
    env = [{"name": "GREETING", "value": "hello"}, {"name": "NAME", "value": "kcore"}]
    assert expand_args(["echo", "$(GREETING) $(NAME)", "$$(NAME)", "$(MISSING)"], env) == [
        "echo",
        "hello kcore",
        "$(NAME)",
        "$(MISSING)",
    ]
    assert expand_args(None, env) == []
