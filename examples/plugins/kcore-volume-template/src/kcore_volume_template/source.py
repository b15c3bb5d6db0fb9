"""The ``template.examples.kcore.io`` CSI driver: a ConfigMap's values rendered as templates.

A pod uses it as Kubernetes uses any third-party volume driver, as an inline ephemeral CSI
volume; its settings are the volume's ``volumeAttributes`` (strings, as in Kubernetes)::

    volumes:
    - name: site
      csi:
        driver: template.examples.kcore.io
        volumeAttributes:
          configMap: web-templates   # a ConfigMap in the pod's namespace
          items: '[{"key": "index.html", "path": "html/index.html", "mode": "0600"}]'
          defaultMode: "0644"        # optional, octal
          optional: "false"          # optional: a missing ConfigMap or key gives no file

``items`` (optional) is a JSON list like a configMap volume's ``items``: which keys, where,
and with which mode (an octal string, or a number as in Kubernetes' JSON); without it every
key is a file of its own name. Each value is rendered with the pod's fields (see
:mod:`.render`) and the files are published all at once (see :mod:`.files`); when the
ConfigMap or a label changes, the next ``setup`` publishes the new version. ``binaryData``
is not rendered and not shown. The volume is always read-only; ``readOnly`` and ``fsType``
are accepted and change nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kcore import NotFound

from kcore_volume_template.files import clean_path, invalid, publish, remove
from kcore_volume_template.render import render

DRIVER = "template.examples.kcore.io"
DEFAULT_MODE = 0o644
ATTRIBUTES = "csi.volumeAttributes"
KNOWN = ("configMap", "items", "defaultMode", "optional")
KUBELET_PREFIX = "csi.storage.k8s.io/"
"""Attributes the kubelet may add for a driver (pod name, ``ephemeral`` ...): ignored."""


class TemplateSource:
    """A :class:`kcore.VolumeSource` for ``csi`` volumes of the driver :data:`DRIVER`."""

    type_name = f"csi:{DRIVER}"
    read_only = True  # API data: containers read it, never write it

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        files = await self.files(pod, attributes(volume), api)
        await asyncio.to_thread(publish, Path(target), files)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        await asyncio.to_thread(remove, Path(target))

    async def files(
        self, pod: Mapping[str, Any], attrs: Mapping[str, str], api: Any
    ) -> dict[str, tuple[bytes, int]]:
        """Every file of the volume, checked and rendered, before anything is written."""
        name = attrs.get("configMap")
        if not name:
            raise invalid(f"{ATTRIBUTES}.configMap", "a ConfigMap name is required")
        optional = _flag(attrs.get("optional", "false"), f"{ATTRIBUTES}.optional")
        default_mode = _mode(attrs.get("defaultMode", DEFAULT_MODE), f"{ATTRIBUTES}.defaultMode")
        items = _items(attrs.get("items"))
        namespace = (pod.get("metadata") or {}).get("namespace") or "default"
        try:
            config_map = await api.get("v1", "ConfigMap", name, namespace)
        except NotFound:
            if optional:
                return {}
            raise NotFound(f'configmap "{name}" not found') from None
        data = config_map.get("data") or {}
        if items is None:
            items = [{"key": key} for key in sorted(data)]
        files: dict[str, tuple[bytes, int]] = {}
        for i, item in enumerate(items):
            key = item.get("key")
            if key not in data:
                if optional:
                    continue
                raise NotFound(f"configmap references non-existent config key: {key}")
            field = f"{ATTRIBUTES}.items[{i}]"
            path = clean_path(item.get("path") or key, f"{field}.path")
            mode = _mode(item.get("mode", default_mode), f"{field}.mode")
            text = render(str(data[key]), pod, field=f"configmap {name} key {key}")
            files[path] = (text.encode(), mode)
        return files

    def conformance(self) -> list[Any]:
        """The cases the volume conformance suite checks this source with."""
        from kcore_volume_template.conformance import cases

        return cases()


def attributes(volume: Mapping[str, Any]) -> dict[str, str]:
    """The volume's ``volumeAttributes``, checked: strings only, no unknown name."""
    csi = volume.get("csi") or {}
    if csi.get("driver") != DRIVER:
        raise invalid("csi.driver", f"{csi.get('driver')!r}: this source is the driver {DRIVER}")
    attrs = csi.get("volumeAttributes") or {}
    if not isinstance(attrs, Mapping):
        raise invalid(ATTRIBUTES, "must be a map of strings")
    for key, value in attrs.items():
        if key.startswith(KUBELET_PREFIX):
            continue
        if key not in KNOWN:
            raise invalid(f"{ATTRIBUTES}.{key}", f"unknown attribute (known: {', '.join(KNOWN)})")
        if not isinstance(value, str):
            raise invalid(f"{ATTRIBUTES}.{key}", f"{value!r}: must be a string")
    return {k: v for k, v in attrs.items() if k in KNOWN}


def _items(text: str | None) -> list[Mapping[str, Any]] | None:
    if text is None:
        return None
    field = f"{ATTRIBUTES}.items"
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise invalid(field, f"must be a JSON list of items: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise invalid(field, 'must be a JSON list like [{"key": "k", "path": "p"}]')
    return items


def _flag(value: str, field: str) -> bool:
    if value not in ("true", "false"):
        raise invalid(field, f'{value!r}: must be "true" or "false"')
    return value == "true"


def _mode(mode: object, field: str) -> int:
    if isinstance(mode, str):
        try:
            mode = int(mode, 8)
        except ValueError:
            raise invalid(field, f'{mode!r}: must be octal digits, like "0644"') from None
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise invalid(field, f"{mode!r}: must be a number between 0 and 0777 (octal)")
    return mode
