"""events.k8s.io/v1 Event: the newer event shape (``regarding``/``note``).

Served next to core/v1 Event, as Kubernetes does; both describe the same events.
"""

from __future__ import annotations

from typing import ClassVar

from kcore.api.core_v1 import EventSource
from kcore.api.meta import (
    K8sStruct,
    MicroTime,
    ObjectReference,
    Time,
    TypedObject,
    normalize_times,
)


class EventSeries(K8sStruct):
    count: int | None = None
    last_observed_time: MicroTime | None = None

    def __post_init__(self) -> None:
        normalize_times(self, micro=("last_observed_time",))


class Event(TypedObject):
    API_VERSION: ClassVar[str] = "events.k8s.io/v1"
    KIND: ClassVar[str] = "Event"

    event_time: MicroTime | None = None
    series: EventSeries | None = None
    reporting_controller: str | None = None
    reporting_instance: str | None = None
    action: str | None = None
    reason: str | None = None
    regarding: ObjectReference | None = None
    related: ObjectReference | None = None
    note: str | None = None
    type: str | None = None
    deprecated_source: EventSource | None = None
    deprecated_first_timestamp: Time | None = None
    deprecated_last_timestamp: Time | None = None
    deprecated_count: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        normalize_times(
            self,
            "deprecated_first_timestamp",
            "deprecated_last_timestamp",
            micro=("event_time",),
        )


__all__ = ["Event", "EventSeries"]
