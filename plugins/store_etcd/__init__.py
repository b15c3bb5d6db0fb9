"""store_etcd: the store slot on a real etcd v3 cluster, which is how kcore outgrows one
machine.

``--etcd-endpoints`` names the cluster's members (calls fail over between them);
``--etcd-cacert/--etcd-cert/--etcd-key`` give TLS with a client certificate. Keys live
under ``--etcd-prefix`` (default ``/kcore``); a prefix ending in ``*`` gets a random suffix,
chosen once per data directory (recorded in it), so every new data directory starts on a
fresh, empty keyspace and a restart finds its own again: use it for
conformance runs and tests on a shared etcd, e.g.
``kcore conformance --plugin store_etcd --etcd-prefix='/kcore-test-*'``.
``--etcd-compaction-interval`` seconds of history are kept (default 300, as
kube-apiserver; 0 leaves compaction to someone else). ``backend.py`` explains the design.
"""

from __future__ import annotations

from pathlib import Path

import click

from kcore import Invalid, PermanentError, Settings, hookimpl


@hookimpl
def kcore_store(settings: Settings):
    from kcore.plugins.store_etcd.backend import (
        DEFAULT_COMPACTION_INTERVAL,
        DEFAULT_ENDPOINT,
        DEFAULT_PREFIX,
        EtcdStore,
    )

    interval = settings.option("etcd_compaction_interval", DEFAULT_COMPACTION_INTERVAL)
    try:
        interval = float(interval)
    except ValueError:
        raise Invalid(f"--etcd-compaction-interval: {interval!r} is not a number") from None
    return EtcdStore(
        settings.option("etcd_endpoints", DEFAULT_ENDPOINT),
        prefix=_prefix_of(settings, settings.option("etcd_prefix", DEFAULT_PREFIX)),
        cacert=settings.option("etcd_cacert"),
        cert=settings.option("etcd_cert"),
        key=settings.option("etcd_key"),
        compaction_interval=interval,
    )


PREFIX_FILE = "store_etcd.prefix"
"""In the data directory: the keyspace a ``*`` prefix template was given there."""


def _prefix_of(settings: Settings, prefix: str) -> str:
    """``prefix``; for a template (ending in ``*``) the keyspace chosen for this data
    directory the first time, so that a daemon restarted on it finds its objects again."""
    if not isinstance(prefix, str) or not prefix.endswith("*"):
        return prefix
    from kcore.pki import atomic_write
    from kcore.plugins.store_etcd.backend import resolve_prefix

    record = Path(settings.data_dir) / PREFIX_FILE
    try:
        template, _, chosen = record.read_text().partition("\n")
    except FileNotFoundError:
        template = chosen = ""
    if template == prefix and chosen.strip():
        return chosen.strip()
    chosen = resolve_prefix(prefix)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(record, f"{prefix}\n{chosen}\n".encode(), 0o600)
    except OSError as exc:
        raise PermanentError(f"store_etcd: cannot record the keyspace in {record}: {exc}") from exc
    return chosen


@hookimpl
def kcore_add_options():
    tls_file = click.Path(exists=True, dir_okay=False)
    return [
        click.Option(
            ["--etcd-endpoints"],
            envvar="KCORE_ETCD_ENDPOINTS",
            help="store_etcd: client URLs of the etcd members, comma-separated "
            "(default http://127.0.0.1:2379); calls fail over between them.",
        ),
        click.Option(
            ["--etcd-cacert"],
            envvar="KCORE_ETCD_CACERT",
            type=tls_file,
            help="store_etcd: CA certificate (PEM) that signed the etcd servers' certificates.",
        ),
        click.Option(
            ["--etcd-cert"],
            envvar="KCORE_ETCD_CERT",
            type=tls_file,
            help="store_etcd: client certificate (PEM) for etcd's --client-cert-auth.",
        ),
        click.Option(
            ["--etcd-key"],
            envvar="KCORE_ETCD_KEY",
            type=tls_file,
            help="store_etcd: private key (PEM) of --etcd-cert.",
        ),
        click.Option(
            ["--etcd-prefix"],
            envvar="KCORE_ETCD_PREFIX",
            help="store_etcd: etcd key prefix (default /kcore); a trailing * becomes a random "
            "suffix, chosen once per data directory: a fresh keyspace for tests.",
        ),
        click.Option(
            ["--etcd-compaction-interval"],
            envvar="KCORE_ETCD_COMPACTION_INTERVAL",
            type=click.FloatRange(min=0),
            help="store_etcd: compact etcd every this many seconds, keeping that much history "
            "(default 300; 0 disables).",
        ),
    ]
