"""apiextensions.k8s.io/v1: CustomResourceDefinition, which adds a resource to the API.

The types follow Kubernetes' ``k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1``.
A schema (:class:`JSONSchemaProps`) is typed so that a misspelt keyword is dropped and a
wrong value (``minimum: "3"``) is a 422 naming the field, but the API server applies it to
objects as plain data: :mod:`kcore.apiserver.crd` holds those semantics (validation,
pruning, defaults) and the rules a definition must follow.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kcore.api.meta import K8sStruct, Time, TypedObject, normalize_times

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
"""Held by a definition being deleted until its custom objects are gone."""


class ExternalDocumentation(K8sStruct):
    description: str | None = None
    url: str | None = None


class ValidationRule(K8sStruct):
    """An ``x-kubernetes-validations`` entry (a CEL rule; kcore keeps but does not run it)."""

    rule: str | None = None
    message: str | None = None
    message_expression: str | None = None
    reason: str | None = None
    field_path: str | None = None
    optional_old_self: bool | None = None


class JSONSchemaProps(K8sStruct):
    """One node of an OpenAPI v3 schema, with Kubernetes' ``x-kubernetes-*`` extensions."""

    id: str | None = None
    schema: str | None = msgspec.field(default=None, name="$schema")
    ref: str | None = msgspec.field(default=None, name="$ref")
    description: str | None = None
    type: str | None = None
    format: str | None = None
    title: str | None = None
    default: Any = None
    maximum: int | float | None = None
    exclusive_maximum: bool | None = None
    minimum: int | float | None = None
    exclusive_minimum: bool | None = None
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    max_items: int | None = None
    min_items: int | None = None
    unique_items: bool | None = None
    multiple_of: int | float | None = None
    enum: list[Any] = []
    max_properties: int | None = None
    min_properties: int | None = None
    required: list[str] = []
    items: JSONSchemaProps | None = None
    all_of: list[JSONSchemaProps] = []
    one_of: list[JSONSchemaProps] = []
    any_of: list[JSONSchemaProps] = []
    not_: JSONSchemaProps | None = msgspec.field(default=None, name="not")
    properties: dict[str, JSONSchemaProps] = {}
    additional_properties: bool | JSONSchemaProps | None = None
    pattern_properties: dict[str, JSONSchemaProps] = {}
    external_docs: ExternalDocumentation | None = None
    example: Any = None
    nullable: bool | None = None
    x_kubernetes_preserve_unknown_fields: bool | None = msgspec.field(
        default=None, name="x-kubernetes-preserve-unknown-fields"
    )
    x_kubernetes_embedded_resource: bool | None = msgspec.field(
        default=None, name="x-kubernetes-embedded-resource"
    )
    x_kubernetes_int_or_string: bool | None = msgspec.field(
        default=None, name="x-kubernetes-int-or-string"
    )
    x_kubernetes_list_map_keys: list[str] = msgspec.field(
        default_factory=list, name="x-kubernetes-list-map-keys"
    )
    x_kubernetes_list_type: str | None = msgspec.field(default=None, name="x-kubernetes-list-type")
    x_kubernetes_map_type: str | None = msgspec.field(default=None, name="x-kubernetes-map-type")
    x_kubernetes_validations: list[ValidationRule] = msgspec.field(
        default_factory=list, name="x-kubernetes-validations"
    )


class CustomResourceValidation(K8sStruct):
    open_api_v3_schema: JSONSchemaProps | None = msgspec.field(default=None, name="openAPIV3Schema")


class CustomResourceSubresourceScale(K8sStruct):
    spec_replicas_path: str | None = None
    status_replicas_path: str | None = None
    label_selector_path: str | None = None


class CustomResourceSubresources(K8sStruct):
    status: dict[str, Any] | None = None
    """Present (``{}``) when the resource has a ``/status`` subresource."""
    scale: CustomResourceSubresourceScale | None = None


class CustomResourceColumnDefinition(K8sStruct):
    name: str | None = None
    type: str | None = None
    format: str | None = None
    description: str | None = None
    priority: int | None = None
    json_path: str | None = None


class SelectableField(K8sStruct):
    json_path: str | None = None


class CustomResourceDefinitionVersion(K8sStruct):
    name: str | None = None
    served: bool | None = None
    storage: bool | None = None
    deprecated: bool | None = None
    deprecation_warning: str | None = None
    schema: CustomResourceValidation | None = None
    subresources: CustomResourceSubresources | None = None
    additional_printer_columns: list[CustomResourceColumnDefinition] = []
    selectable_fields: list[SelectableField] = []


class CustomResourceDefinitionNames(K8sStruct):
    plural: str | None = None
    singular: str | None = None
    short_names: list[str] = []
    kind: str | None = None
    list_kind: str | None = None
    categories: list[str] = []


class WebhookClientConfig(K8sStruct):
    url: str | None = None
    service: dict[str, Any] | None = None
    ca_bundle: str | None = None


class WebhookConversion(K8sStruct):
    client_config: WebhookClientConfig | None = None
    conversion_review_versions: list[str] = []


class CustomResourceConversion(K8sStruct):
    strategy: str | None = None
    """``None`` (only ``apiVersion`` changes between versions) or ``Webhook``."""
    webhook: WebhookConversion | None = None


class CustomResourceDefinitionSpec(K8sStruct):
    group: str | None = None
    names: CustomResourceDefinitionNames = msgspec.field(
        default_factory=CustomResourceDefinitionNames
    )
    scope: str | None = None
    """``Namespaced`` or ``Cluster``."""
    versions: list[CustomResourceDefinitionVersion] = []
    conversion: CustomResourceConversion | None = None
    preserve_unknown_fields: bool | None = None


class CustomResourceDefinitionCondition(K8sStruct):
    type: str | None = None
    """``NamesAccepted``, ``Established``, ``Terminating`` ..."""
    status: str | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_transition_time")


class CustomResourceDefinitionStatus(K8sStruct):
    conditions: list[CustomResourceDefinitionCondition] = []
    accepted_names: CustomResourceDefinitionNames | None = None
    stored_versions: list[str] = []


class CustomResourceDefinition(TypedObject):
    API_VERSION: ClassVar[str] = f"{GROUP}/v1"
    KIND: ClassVar[str] = "CustomResourceDefinition"

    spec: CustomResourceDefinitionSpec = msgspec.field(default_factory=CustomResourceDefinitionSpec)
    status: CustomResourceDefinitionStatus = msgspec.field(
        default_factory=CustomResourceDefinitionStatus
    )


__all__ = [
    "CLEANUP_FINALIZER",
    "GROUP",
    "CustomResourceColumnDefinition",
    "CustomResourceConversion",
    "CustomResourceDefinition",
    "CustomResourceDefinitionCondition",
    "CustomResourceDefinitionNames",
    "CustomResourceDefinitionSpec",
    "CustomResourceDefinitionStatus",
    "CustomResourceDefinitionVersion",
    "CustomResourceSubresourceScale",
    "CustomResourceSubresources",
    "CustomResourceValidation",
    "ExternalDocumentation",
    "JSONSchemaProps",
    "SelectableField",
    "ValidationRule",
    "WebhookClientConfig",
    "WebhookConversion",
]
