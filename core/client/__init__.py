"""The API client: one interface, two transports, and informers on top.

* :class:`ApiClient`: create, get, list, update, patch, delete and watch plain-dict
  objects; errors are :mod:`kcore.errors` categories.
* :class:`InProcessTransport` calls the API server's object store in this process;
  :class:`HttpTransport` speaks HTTP(S) to an API server (``ApiClient.from_kubeconfig``).
  Both give the same answers: kcore's tests run the same checks over each.
* :class:`Informer`: list, then watch, into a local cache, calling handlers on changes.
"""

from __future__ import annotations

from kcore.client.api_client import ApiClient, PatchType
from kcore.client.errors import ConnectionFailed, error_from_status, from_server
from kcore.client.http import HttpTransport
from kcore.client.informer import Informer, object_key
from kcore.client.inprocess import InProcessTransport
from kcore.client.kubeconfig import Kubeconfig, KubeconfigError, load_kubeconfig
from kcore.client.transport import ListPage, Query, Transport, WatchEvent

__all__ = [
    "ApiClient",
    "ConnectionFailed",
    "HttpTransport",
    "InProcessTransport",
    "Informer",
    "Kubeconfig",
    "KubeconfigError",
    "ListPage",
    "PatchType",
    "Query",
    "Transport",
    "WatchEvent",
    "error_from_status",
    "from_server",
    "load_kubeconfig",
    "object_key",
]
