"""kcore-controller-website: an example kcore plugin that adds a kind and its controller.

The plugin defines ``examples.kcore.io/v1`` ``Website`` (``crd.yaml``) and contributes the
:class:`~kcore_website.controller.WebsiteController`, which serves each Website's HTML
with busybox ``httpd`` pods behind a Service. Load it with ``kcore --plugins
...,website daemon`` once it is installed (entry point ``website`` in the
``kcore.plugins`` group).
"""

from __future__ import annotations

from typing import Any

from kcore import Settings, hookimpl
from kcore_website.controller import WebsiteController, definition

__version__ = "0.1.0"


@hookimpl
def kcore_controllers(settings: Settings) -> list[Any]:
    return [WebsiteController()]


__all__ = ["WebsiteController", "definition", "kcore_controllers"]
