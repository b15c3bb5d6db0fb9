"""How the volume conformance suite checks the ``template.examples.kcore.io`` driver: one
:class:`~kcore.conformance.suites.volumes.VolumeCase` per kind of volume it makes, each an
inline ``csi`` volume with the driver's settings in ``volumeAttributes``.

``TemplateSource.conformance()`` returns these, so ``kcore conformance --plugin
volume_template`` runs them; this module is imported only then (it needs pytest).
The suite's pod is ``volumes`` in namespace ``kcore-conformance``, labelled ``app=web``,
on node ``node-1``.
"""

from __future__ import annotations

import json
from typing import Any

from kcore.conformance.suites.volumes import NAMESPACE, VolumeCase, VolumeVersion

from kcore_volume_template.source import DRIVER

SITE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "site", "namespace": NAMESPACE},
    "data": {
        "index.html": "<h1>{{ metadata.name }}</h1>\n",
        "app.conf": "app={{ metadata.labels['app'] }}\nnode={{spec.nodeName}}\n{{ nothing }",
    },
}
RENDERED = {
    "index.html": b"<h1>volumes</h1>\n",
    "app.conf": b"app=web\nnode=node-1\n{{ nothing }",
}


def _volume(name: str, config_map: str, **attributes: str) -> dict[str, Any]:
    """A ``csi`` volume of the driver rendering ``config_map``."""
    attrs = {"configMap": config_map, **attributes}
    return {"name": name, "csi": {"driver": DRIVER, "volumeAttributes": attrs}}


def _items(*items: dict[str, Any], **attributes: str) -> dict[str, Any]:
    return _volume("site", "site", items=json.dumps(list(items)), **attributes)


def _version(n: int) -> VolumeVersion:
    """Version ``n``: the ConfigMap's text and the pod's ``version`` label change; odd
    versions have one more file."""
    filler = "abcdefgh"[n % 8] * 16384  # big enough that a torn read would show
    data = {"page.html": f"<p>{n}</p>{filler}" + "{{ metadata.labels['version'] }}"}
    files = {"page.html": f"<p>{n}</p>{filler}{n}".encode()}
    if n % 2:
        data["odd.txt"] = "odd {{ metadata.labels['version'] }}"
        files["odd.txt"] = f"odd {n}".encode()
    config_map = {**SITE, "metadata": {"name": "versioned", "namespace": NAMESPACE}, "data": data}
    return VolumeVersion(
        files=files, objects=[config_map], labels={"app": "web", "version": str(n)}
    )


def cases() -> list[VolumeCase]:
    return [
        VolumeCase(
            "template",
            _volume("site", "site"),
            objects=[SITE],
            files=RENDERED,
            modes={"index.html": 0o644, "app.conf": 0o644},
        ),
        VolumeCase(
            "template-items",
            _items(
                {"key": "index.html", "path": "html/index.html"},
                {"key": "app.conf", "path": "app.conf", "mode": "0600"},
                defaultMode="0640",
            ),
            objects=[SITE],
            files={"html/index.html": RENDERED["index.html"], "app.conf": RENDERED["app.conf"]},
            modes={"html/index.html": 0o640, "app.conf": 0o600},
            item_path=lambda path: _items({"key": "index.html", "path": path}),
            missing_optional=[
                _volume("site", "absent", optional="true"),
                _items({"key": "absent", "path": "absent"}, optional="true"),
            ],
            missing_required=[
                (_volume("site", "absent"), 'configmap "absent" not found'),
                (
                    _items({"key": "absent", "path": "absent"}),
                    "configmap references non-existent config key: absent",
                ),
            ],
        ),
        VolumeCase(
            "template-update",
            _volume("page", "versioned"),
            objects=_version(0).objects,
            files=_version(0).files,
            labels=_version(0).labels,
            update=_version,
        ),
    ]
