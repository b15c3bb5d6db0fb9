"""Certificates for plugins: issuing one with the cluster CA (the CSR signer), as the API
server issues its own serving certificate, and making a CA (tests, conformance scenarios)."""

from __future__ import annotations

from kcore.apiserver.pki import atomic_write, create_ca, issue_certificate

__all__ = ["atomic_write", "create_ca", "issue_certificate"]
