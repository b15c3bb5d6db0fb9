"""Benchmark of pulling an image from a loopback registry: kcore next to ``skopeo copy``.

    python bench/bench_image_pull.py [--runs 7] [--layers 5] [--layer-mb 10]

One invocation starts Debian's ``docker-registry`` on a free loopback port (plain HTTP,
storage in a temporary directory), builds two images of ``--layers`` gzip layers of random
data (``--layer-mb`` MB each, about 50 MB in all), the second sharing all but its last
layer with the first, and pushes both with ``skopeo copy``. Then, in alternating order per
round, each ``--runs`` times:

- **cold**: an empty store pulls the first image. kcore: ``kcore.registry.pull`` in this
  process (manifest, concurrent layer downloads, digest checks, and unpacking every layer
  into the store), and ``kcore image pull`` as a command (Python start-up included);
  skopeo: ``skopeo copy docker://... oci:<empty dir>`` and ``dir:<empty dir>`` (blobs
  written as they are, nothing unpacked);
- **shared**: the store (or OCI layout) already holds the first image and pulls the second,
  which needs one new layer. kcore removes the second image between runs (its shared
  layers stay, the first image uses them); skopeo copies into a fresh copy of an OCI layout
  holding the first image (``oci:`` reuses the blobs it has).

Printed: median and p99 (nearest rank: with few runs, the slowest) per row and the ratio of
kcore's median to skopeo's ``oci:`` median of the same case. The comparison is not like for
like: kcore also gunzips and unpacks every new layer, which skopeo does not do. Everything
is removed at the end (the registry is stopped by its pid), also after a failure or Ctrl-C.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from kcore.images import ImageStore
from kcore.registry import RegistryConfig, host_platform, pull

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_layer(name: str, size: int) -> bytes:
    data = os.urandom(size)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 946684800
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


def write_layout(dest: Path, layers: list[bytes], ref_name: str) -> None:
    """An OCI layout holding one image of ``layers`` (gzip blobs)."""
    diff_ids = ["sha256:" + sha256(gzip.decompress(b)) for b in layers]
    config = json.dumps(
        {
            "architecture": host_platform()[1],
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + sha256(b),
                    "size": len(b),
                }
                for b in layers
            ],
        }
    ).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in [*layers, config, manifest]:
        (blobs / sha256(blob)).write_bytes(blob)
    desc = {
        "mediaType": MEDIA_MANIFEST,
        "digest": "sha256:" + sha256(manifest),
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref_name},
    }
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, top: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(top / "storage")}},
            "http": {"addr": self.host, "secret": os.urandom(8).hex()},
        }
        (top / "registry.yml").write_text(json.dumps(config))
        self.log = (top / "registry.log").open("wb")
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(top / "registry.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("docker-registry exited at start")
            try:
                opener.open(f"http://{self.host}/v2/", timeout=2).close()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()


def skopeo(*args: str) -> None:
    subprocess.run(
        ["skopeo", "--insecure-policy", *args], check=True, capture_output=True, timeout=600
    )


def p99(values: list[float]) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, math.ceil(0.99 * len(data)) - 1)]


def run(args: argparse.Namespace, top: Path) -> None:
    layer_bytes = int(args.layer_mb * 1_000_000)
    print(
        f"building 2 images of {args.layers} x {args.layer_mb:g} MB random gzip layers...",
        file=sys.stderr,
    )
    shared = [random_layer(f"layer{n}", layer_bytes) for n in range(args.layers - 1)]
    first = [*shared, random_layer("first", layer_bytes)]
    second = [*shared, random_layer("second", layer_bytes)]
    write_layout(top / "layout-a", first, "a")
    write_layout(top / "layout-b", second, "b")
    size_mb = sum(len(b) for b in first) / 1e6

    registry = Registry(top)
    try:
        image_a = f"{registry.host}/bench/app:a"
        image_b = f"{registry.host}/bench/app:b"
        for layout, ref_name, image in (("layout-a", "a", image_a), ("layout-b", "b", image_b)):
            skopeo(
                "copy",
                "--dest-tls-verify=false",
                f"oci:{top / layout}:{ref_name}",
                f"docker://{image}",
            )
        config = RegistryConfig.from_options(insecure=[registry.host])
        timings: dict[str, list[float]] = {}
        kcore_cmd = [shutil.which("kcore") or sys.executable]
        if kcore_cmd[0] == sys.executable:
            kcore_cmd.append("-m")
            kcore_cmd.append("kcore.cli")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}

        # The first image in an OCI layout, for skopeo's shared case.
        seeded = top / "seeded-oci"
        skopeo("copy", "--src-tls-verify=false", f"docker://{image_a}", f"oci:{seeded}:a")
        # The first image in a store, for kcore's shared case.
        shared_store = ImageStore(top / "shared-store")
        asyncio.run(pull(shared_store, image_a, config=config))

        def timed(name: str, fn) -> None:
            started = time.perf_counter()
            fn()
            timings.setdefault(name, []).append(time.perf_counter() - started)

        def kcore_cold(n: int) -> None:
            store = ImageStore(top / f"cold-{n}")
            timed("cold kcore pull()", lambda: asyncio.run(pull(store, image_a, config=config)))
            shutil.rmtree(store.root)

        def kcore_cold_cli(n: int) -> None:
            data = top / f"cli-{n}"
            cmd = [
                *kcore_cmd,
                "--plugins",
                "runtime_linux",
                "--data-dir",
                str(data),
                "--registry-insecure",
                registry.host,
                "image",
                "pull",
                image_a,
            ]
            timed(
                "cold kcore image pull",
                lambda: subprocess.run(cmd, check=True, capture_output=True, env=env),
            )
            shutil.rmtree(data)

        def skopeo_cold(n: int, transport: str) -> None:
            dest = top / f"skopeo-{transport}-{n}"
            target = f"{transport}:{dest}" + (":a" if transport == "oci" else "")
            timed(
                f"cold skopeo copy {transport}:",
                lambda: skopeo("copy", "--src-tls-verify=false", f"docker://{image_a}", target),
            )
            shutil.rmtree(dest)

        def kcore_shared(n: int) -> None:
            timed(
                "shared kcore pull()",
                lambda: asyncio.run(pull(shared_store, image_b, config=config)),
            )
            shared_store.remove(image_b)

        def skopeo_shared(n: int) -> None:
            dest = top / f"skopeo-shared-{n}"
            shutil.copytree(seeded, dest)
            timed(
                "shared skopeo copy oci:",
                lambda: skopeo(
                    "copy", "--src-tls-verify=false", f"docker://{image_b}", f"oci:{dest}:b"
                ),
            )
            shutil.rmtree(dest)

        steps = [
            kcore_cold,
            kcore_cold_cli,
            lambda n: skopeo_cold(n, "oci"),
            lambda n: skopeo_cold(n, "dir"),
            kcore_shared,
            skopeo_shared,
        ]
        for step in steps:  # one unrecorded warm-up each
            step(-1)
        timings.clear()
        for n in range(args.runs):
            print(f"round {n + 1}/{args.runs}", file=sys.stderr)
            for step in steps if n % 2 == 0 else reversed(steps):
                step(n)
    finally:
        registry.stop()

    reference = {
        "cold": statistics.median(timings["cold skopeo copy oci:"]),
        "shared": statistics.median(timings["shared skopeo copy oci:"]),
    }
    print(
        f"\nimage: {args.layers} gzip layers, {size_mb:.1f} MB; the shared case fetches one "
        f"layer ({len(first[-1]) / 1e6:.1f} MB); {args.runs} runs each; loopback "
        f"docker-registry; {os.cpu_count()} CPUs\n"
    )
    header = f"{'case':<26} {'median s':>9} {'p99 s':>8} {'vs skopeo oci:':>15}"
    print(header)
    print("-" * len(header))
    for name, values in timings.items():
        median = statistics.median(values)
        ratio = median / reference[name.split()[0]]
        print(f"{name:<26} {median:>9.3f} {p99(values):>8.3f} {ratio:>14.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mb", type=float, default=10.0)
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt install docker-registry skopeo)")
    top = Path(tempfile.mkdtemp(prefix="kcore-bench-pull-"))
    try:
        run(args, top)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
