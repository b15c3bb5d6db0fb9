"""The daemon process: start-up output, TLS with the admin token, restarts, SIGTERM."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request

from daemon_process import start_daemon, stop_daemon


def _opener(data_dir):
    ctx = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
    token = (data_dir / "pki" / "admin.token").read_text().strip()
    return ctx, {"Authorization": f"Bearer {token}"}


def test_state_and_credentials_survive_a_restart(tmp_path):
    d = start_daemon(tmp_path)
    try:
        assert d.kubectl("create", "configmap", "keep", "--from-literal=a=b").returncode == 0
        ca_before = (tmp_path / "pki" / "ca.crt").read_bytes()
    finally:
        assert stop_daemon(d) == 0
    d = start_daemon(tmp_path)
    try:
        assert (tmp_path / "pki" / "ca.crt").read_bytes() == ca_before
        out = d.kubectl("get", "configmap", "keep", "-o", "json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["data"] == {"a": "b"}
        assert d.kubectl("get", "namespaces").stdout.count("Active") == 4
    finally:
        assert stop_daemon(d) == 0


def test_https_requires_the_token(tmp_path):
    d = start_daemon(tmp_path)
    try:
        ctx, headers = _opener(tmp_path)
        url = d.url + "/api/v1/namespaces"
        try:
            urllib.request.urlopen(urllib.request.Request(url), context=ctx, timeout=10)
            raise AssertionError("expected 401")
        except urllib.error.HTTPError as err:
            assert err.code == 401
            assert json.loads(err.read())["reason"] == "Unauthorized"
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), context=ctx, timeout=10
        ) as resp:
            assert json.loads(resp.read())["kind"] == "NamespaceList"
    finally:
        stop_daemon(d)


def test_sigterm_ends_open_watch_streams_cleanly(tmp_path):
    d = start_daemon(tmp_path)
    ctx, headers = _opener(tmp_path)
    result: dict = {}

    def watch():
        req = urllib.request.Request(
            d.url + "/api/v1/namespaces/default/secrets?watch=true", headers=headers
        )
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            # read() returns only at the terminating chunk: a cut stream raises instead.
            result["body"] = resp.read()

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    code = stop_daemon(d)
    thread.join(timeout=20)
    assert code == 0
    assert not thread.is_alive()
    assert result.get("body") == b""
    assert time.monotonic() - started < 10
