"""Templates: text with ``{{ <field path> }}`` placeholders, filled from the pod.

A placeholder names a pod field as the downward API does (``kcore.pods.fieldpath``):
``metadata.name``, ``metadata.namespace``, ``metadata.uid``, ``metadata.labels['app']``,
``metadata.annotations['team']``, ``metadata.labels`` (all labels as ``key="value"``
lines), ``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP``,
``status.hostIP``. Everything else in a template is copied as it is; nothing in a template
is ever executed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kcore import FieldError, Invalid
from kcore.pods.fieldpath import pod_field

PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def render(template: str, pod: Mapping[str, Any], *, field: str) -> str:
    """``template`` with each placeholder replaced by the pod's field; ``Invalid`` naming
    ``field`` (where the template came from) for a placeholder that names no pod field."""

    def value(match: re.Match[str]) -> str:
        path = match.group(1)
        for_env = path.startswith(("spec.", "status."))  # fields the downward API gives env
        try:
            return pod_field(pod, {"fieldPath": path}, for_env=for_env, field=field)
        except Invalid as exc:
            message = f"{field}: {{{{ {path} }}}}: {exc}"
            raise Invalid(message, causes=[FieldError(field, message)]) from None

    return PLACEHOLDER.sub(value, template)
