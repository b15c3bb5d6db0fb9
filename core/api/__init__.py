"""The Kubernetes API object model: typed kinds, decoding, defaulting and validation.

The path of every object through the API server, in order::

    obj = decode(body, into=Pod)   # BadRequest / Invalid naming the field
    apply_defaults(obj)            # fill what Kubernetes fills
    validate(obj)                  # Invalid with every bad field's path
    encode_json(obj)               # apiVersion and kind always present

:mod:`kcore.api.registry` lists every served kind (group, version, plural, scope, short
names, subresources) and drives discovery. Submodules hold the types by group and
version: :mod:`~kcore.api.meta`, :mod:`~kcore.api.core_v1`, :mod:`~kcore.api.apps_v1`,
:mod:`~kcore.api.batch_v1`, :mod:`~kcore.api.coordination_v1`,
:mod:`~kcore.api.events_v1`, :mod:`~kcore.api.discovery_v1`, :mod:`~kcore.api.autoscaling_v1`,
:mod:`~kcore.api.authentication_v1`, :mod:`~kcore.api.certificates_v1`,
:mod:`~kcore.api.apiextensions_v1` (CustomResourceDefinition: its resources are served
as plain dicts, see :mod:`kcore.apiserver.crd`).
"""

from __future__ import annotations

from kcore.api import registry
from kcore.api.apiextensions_v1 import CustomResourceDefinition
from kcore.api.apps_v1 import ControllerRevision, DaemonSet, Deployment, ReplicaSet
from kcore.api.authentication_v1 import TokenRequest
from kcore.api.autoscaling_v1 import Scale
from kcore.api.batch_v1 import CronJob, Job
from kcore.api.certificates_v1 import CertificateSigningRequest
from kcore.api.codec import (
    clone,
    decode,
    decode_all_yaml,
    decode_yaml_documents,
    encode_json,
    encode_yaml,
    to_dict,
    unknown_fields,
)
from kcore.api.coordination_v1 import Lease
from kcore.api.core_v1 import (
    Binding,
    ConfigMap,
    Container,
    Endpoints,
    Event,
    Namespace,
    Node,
    Pod,
    PodSpec,
    PodTemplateSpec,
    Secret,
    Service,
    ServiceAccount,
    Volume,
)
from kcore.api.defaults import apply_defaults, generate_job_selector, qos_class
from kcore.api.discovery_v1 import EndpointSlice
from kcore.api.meta import (
    Condition,
    DeleteOptions,
    LabelSelector,
    ListMeta,
    ObjectList,
    ObjectMeta,
    OwnerReference,
    Status,
    TypedObject,
    find_condition,
    micro_now,
    now,
    set_condition,
)
from kcore.api.quantity import parse_quantity
from kcore.api.registry import ResourceInfo, by_kind, by_resource, resolve, type_for
from kcore.api.validation import validate, validate_update, validation_errors

__all__ = [
    "Binding",
    "CertificateSigningRequest",
    "Condition",
    "ConfigMap",
    "Container",
    "ControllerRevision",
    "CronJob",
    "CustomResourceDefinition",
    "DaemonSet",
    "DeleteOptions",
    "Deployment",
    "EndpointSlice",
    "Endpoints",
    "Event",
    "Job",
    "LabelSelector",
    "Lease",
    "ListMeta",
    "Namespace",
    "Node",
    "ObjectList",
    "ObjectMeta",
    "OwnerReference",
    "Pod",
    "PodSpec",
    "PodTemplateSpec",
    "ReplicaSet",
    "ResourceInfo",
    "Scale",
    "Secret",
    "Service",
    "ServiceAccount",
    "Status",
    "TokenRequest",
    "TypedObject",
    "Volume",
    "apply_defaults",
    "by_kind",
    "by_resource",
    "clone",
    "decode",
    "decode_all_yaml",
    "decode_yaml_documents",
    "encode_json",
    "encode_yaml",
    "find_condition",
    "generate_job_selector",
    "micro_now",
    "now",
    "parse_quantity",
    "qos_class",
    "registry",
    "resolve",
    "set_condition",
    "to_dict",
    "type_for",
    "unknown_fields",
    "validate",
    "validate_update",
    "validation_errors",
]
