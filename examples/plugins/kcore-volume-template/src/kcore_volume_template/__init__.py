"""volume_template: a kcore volume source that renders a ConfigMap's values as templates
filled with the pod's own fields (name, namespace, labels, node ...).

Install the package and add it to the plugins the node runs::

    export KCORE_PLUGINS=store_sqlite,runtime_linux,net_bridge,volumes,volume_template
    kcore daemon

(and the controllers and scheduler you run); a pod can then mount inline ``csi`` volumes
of the driver ``template.examples.kcore.io`` (see :mod:`.source`).
"""

from __future__ import annotations

from kcore import Settings, VolumeSource, hookimpl

from kcore_volume_template.source import DRIVER, TemplateSource

__all__ = ["DRIVER", "TemplateSource"]


@hookimpl
def kcore_volume_sources(settings: Settings) -> list[VolumeSource]:
    return [TemplateSource()]
