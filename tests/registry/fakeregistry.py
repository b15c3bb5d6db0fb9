"""A registry double on aiohttp for what a real registry does not do on request: wrong
bytes, cut-short and stalled downloads, error answers, bearer challenges we can inspect."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

from .servers import MEDIA_MANIFEST, Image, ThreadedServer, sha256


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Faults:
    """What goes wrong, per request. Lists are consumed one item per matching request."""

    # path suffix ("manifests/1", "blobs/sha256:<hex>", "/v2/") -> statuses to answer first
    status: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    # blob hex -> for each coming request, how many bytes to send before cutting it short
    cut: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    # blob hex -> send this many bytes, then nothing at all
    stall: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)  # blob or manifest hex: flip a byte
    wrong_digest_header: bool = False
    ignore_range: bool = False


class FakeRegistry:
    """Serves manifests and blobs added with :meth:`add`; optional auth: ``basic`` or
    ``bearer`` (a token realm at ``/token`` that wants ``user``/``password``)."""

    def __init__(
        self, *, auth: str | None = None, user: str = "alice", password: str = "secret"
    ) -> None:
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.faults = Faults()
        self.seen: list[Seen] = []
        self.auth = auth
        self.user, self.password = user, password
        self.tokens: set[str] = set()
        self.refresh_token = "refresh-" + secrets.token_hex(8)
        self.token_requests: list[dict] = []
        self.release = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.blob_delay = 0.0
        app = web.Application()
        app.router.add_get("/v2/", self.ping)
        app.router.add_get("/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self.blob)
        app.router.add_get("/token", self.token)
        app.router.add_post("/token", self.oauth_token)
        self.server = ThreadedServer(app)

    def start(self) -> FakeRegistry:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.call(self.release.set)
        self.server.stop()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def add(self, repo: str, tag: str, image: Image) -> None:
        self.blobs.update(image.blobs)
        self.add_manifest(repo, tag, image.manifest, MEDIA_MANIFEST)

    def add_manifest(self, repo: str, tag: str, data: bytes, media_type: str) -> None:
        self.manifests[(repo, tag)] = (data, media_type)
        self.manifests[(repo, f"sha256:{sha256(data)}")] = (data, media_type)

    def requests(self, pattern: str) -> list[Seen]:
        return [s for s in self.seen if re.search(pattern, s.path)]

    # ------------------------------------------------------------------ handlers

    def _fault_status(self, path: str) -> int | None:
        for suffix, statuses in self.faults.status.items():
            if path.endswith(suffix) and statuses:
                return statuses.pop(0)
        return None

    def _challenge(self, request: web.Request, name: str | None) -> web.Response | None:
        if self.auth is None:
            return None
        given = request.headers.get("Authorization", "")
        if self.auth == "basic":
            want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if given == f"Basic {want}":
                return None
            header = 'Basic realm="fake"'
        else:
            if given.startswith("Bearer ") and given[7:] in self.tokens:
                return None
            header = f'Bearer realm="http://{self.host}/token",service="fake"'
            if name:
                header += f',scope="repository:{name}:pull"'
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401,
            headers={"WWW-Authenticate": header},
        )

    def _record(self, request: web.Request) -> web.Response | None:
        self.seen.append(Seen(request.method, request.path, dict(request.headers)))
        status = self._fault_status(request.path)
        if status is not None:
            return web.json_response(
                {"errors": [{"code": "UNKNOWN", "message": f"injected {status}"}]}, status=status
            )
        return None

    async def ping(self, request: web.Request) -> web.Response:
        return self._record(request) or self._challenge(request, None) or web.json_response({})

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(
            {"authorization": request.headers.get("Authorization", ""), **request.query}
        )
        want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {want}":
            return web.json_response({"details": "bad credentials"}, status=401)
        token = secrets.token_hex(16)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 300})

    async def oauth_token(self, request: web.Request) -> web.Response:
        """OAuth2 refresh-token grant, as Docker's identity tokens use it."""
        form = dict(await request.post())
        self.token_requests.append({"method": "POST", **form})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
            self.refresh_token
        ):
            return web.json_response({"error": "invalid_grant"}, status=401)
        token = secrets.token_hex(16)
        self.tokens.add(token)
        return web.json_response({"access_token": token})

    async def manifest(self, request: web.Request) -> web.Response:
        name, ref = request.match_info["name"], request.match_info["ref"]
        early = self._record(request) or self._challenge(request, name)
        if early is not None:
            return early
        found = self.manifests.get((name, ref))
        if found is None:
            return web.json_response(
                {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
                status=404,
            )
        data, media = found
        digest = f"sha256:{sha256(data)}"
        if sha256(data) in self.faults.corrupt:
            data = data.replace(b"schemaVersion", b"schemaVersiom")
        if self.faults.wrong_digest_header:
            digest = "sha256:" + "0" * 64
        return web.Response(
            body=data, headers={"Content-Type": media, "Docker-Content-Digest": digest}
        )

    async def blob(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        early = self._record(request) or self._challenge(request, name)
        if early is not None:
            return early
        hexdigest = request.match_info["digest"].partition(":")[2]
        data = self.blobs.get(hexdigest)
        if data is None:
            return web.json_response(
                {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}, status=404
            )
        if hexdigest in self.faults.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if m and not self.faults.ignore_range:
            start = int(m.group(1))
        body = data[start:]
        resp = web.StreamResponse(status=206 if start else 200)
        resp.content_length = len(body)
        resp.content_type = "application/octet-stream"
        resp.headers["Docker-Content-Digest"] = f"sha256:{hexdigest}"
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await resp.prepare(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.blob_delay)
            return await self._send(request, resp, hexdigest, body)
        finally:
            self.in_flight -= 1

    async def _send(
        self, request: web.Request, resp: web.StreamResponse, hexdigest: str, body: bytes
    ) -> web.StreamResponse:
        cuts = self.faults.cut.get(hexdigest)
        if cuts:
            cut = cuts.pop(0)
            await resp.write(body[:cut])
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.close()
            return resp
        if hexdigest in self.faults.stall:
            await resp.write(body[: self.faults.stall[hexdigest]])
            await self.release.wait()
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp
