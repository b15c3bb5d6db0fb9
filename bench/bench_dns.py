"""Benchmark of cluster DNS (the dns plugin's server) next to a direct query to its upstream.

    python bench/bench_dns.py [--queries 2000] [--window 32] [--services 200]

Three processes on loopback: a fake upstream resolver (the plugin's own server, answering
the zone ``upstream.test``), cluster DNS (zone ``cluster.local`` with ``--services``
Services, forwarding everything else to the fake upstream), and this client. Rows:

- in-cluster: ``web-0.default.svc.cluster.local`` A, answered by cluster DNS itself;
- forwarded: ``www.default.svc.upstream.test`` A through cluster DNS to the upstream;
- direct: the same name straight to the upstream (the peer).

Latency: one query at a time over UDP (median, p99). Throughput: ``--window`` queries in
flight on one UDP socket. The ratio column compares each row with the direct query. Nothing
leaves 127.0.0.1; the two server processes are stopped by their pids at the end. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import socket
import statistics
import time

from kcore.plugins.dns import wire


def _serve(domain: str, services: int, upstream_port: int | None, ready) -> None:
    """A child process: a DnsServer on 127.0.0.1 for ``domain`` (with ``services``
    ClusterIP Services ``web-N``, and ``www``), forwarding to ``upstream_port`` if given."""
    import logging

    import structlog

    from kcore.plugins.dns.forward import Forwarder
    from kcore.plugins.dns.records import ClusterZone
    from kcore.plugins.dns.server import DnsServer

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def main() -> None:
        zone = ClusterZone(domain, ttl=5)
        names = [f"web-{i}" for i in range(services)] + ["www"]
        for i, name in enumerate(names):
            zone.set_service(
                {
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {
                        "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                        "ports": [{"name": "http", "port": 80}],
                    },
                }
            )
        forwarder = None
        if upstream_port is not None:
            forwarder = Forwarder([("127.0.0.1", upstream_port)], timeout=2.0)
        server = DnsServer(zone, forwarder)
        port = await server.start("127.0.0.1", 0)
        ready.put(port)
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(ctx, domain: str, services: int, upstream_port: int | None):
    queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(domain, services, upstream_port, queue), daemon=True)
    proc.start()
    return proc, queue.get(timeout=30)


def latency(server: tuple[str, int], name: str, count: int) -> list[float]:
    """Seconds per query, one at a time."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.connect(server)
    times = []
    try:
        for i in range(count):
            data = wire.make_query(name, ident=i & 0xFFFF).encode()
            start = time.perf_counter()
            sock.send(data)
            while True:
                reply = sock.recv(4096)
                if reply[:2] == data[:2]:
                    break
            times.append(time.perf_counter() - start)
            assert reply[3] & 0xF == wire.NOERROR and reply[7] >= 1, "no answer"
    finally:
        sock.close()
    return times


def throughput(server: tuple[str, int], name: str, count: int, window: int) -> tuple[float, int]:
    """Queries per second with ``window`` in flight; and how many went unanswered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    sock.connect(server)
    queries = [wire.make_query(name, ident=i).encode() for i in range(count)]
    sent = answered = lost = 0
    start = time.perf_counter()
    try:
        while sent < min(window, count):
            sock.send(queries[sent])
            sent += 1
        while answered + lost < count:
            try:
                sock.recv(4096)
                answered += 1
            except TimeoutError:
                lost += sent - answered - lost
            while sent < count and sent - answered - lost < window:
                sock.send(queries[sent])
                sent += 1
    finally:
        sock.close()
    return answered / (time.perf_counter() - start), lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--services", type=int, default=200)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    procs = []
    try:
        upstream_proc, upstream_port = start_server(ctx, "upstream.test", 1, None)
        procs.append(upstream_proc)
        dns_proc, dns_port = start_server(ctx, "cluster.local", args.services, upstream_port)
        procs.append(dns_proc)
        cluster, upstream = ("127.0.0.1", dns_port), ("127.0.0.1", upstream_port)
        rows = [
            ("in-cluster", cluster, "web-0.default.svc.cluster.local"),
            ("forwarded", cluster, "www.default.svc.upstream.test"),
            ("direct to upstream", upstream, "www.default.svc.upstream.test"),
        ]
        for _, server, name in rows:  # warm-up
            latency(server, name, 50)
        results = {}
        for label, server, name in rows:
            times = latency(server, name, args.queries)
            qps, lost = throughput(server, name, args.queries, args.window)
            results[label] = (statistics.median(times), _p99(times), qps, lost)
        base = results["direct to upstream"]
        print(
            f"cluster DNS on loopback, {args.queries} queries per row, window {args.window}, "
            f"{args.services} services; {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs"
        )
        print(
            f"{'row':<20} {'median ms':>10} {'p99 ms':>8} {'queries/s':>10} {'lost':>5} "
            f"{'median ratio':>13} {'q/s ratio':>10}"
        )
        for label, (median, p99, qps, lost) in results.items():
            print(
                f"{label:<20} {median * 1000:>10.3f} {p99 * 1000:>8.3f} {qps:>10.0f} {lost:>5} "
                f"{median / base[0]:>13.2f} {qps / base[2]:>10.2f}"
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


if __name__ == "__main__":
    main()
