"""make lab: the server starts (as root too), serves /lab with its token, refuses without it, and stops."""
from __future__ import annotations

import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from reproduce.lab import ROOT, lab_command

pytest.importorskip("jupyterlab", reason="JupyterLab is installed by the test extras (make test)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
def test_lab_serves_with_its_token_and_stops(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    env_home = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    import os
    proc = subprocess.Popen(lab_command(port, "127.0.0.1", token), cwd=ROOT, env={**os.environ, **env_home},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        status, deadline = None, time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                status = _get(f"{base}/lab?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        assert proc.poll() is None, f"the server exited: {proc.stdout.read()[-3000:]}"
        assert status == 200, status
        assert _get(f"{base}/api/status") in (401, 403), "the API must refuse a request without the token"
        assert _get(f"{base}/api/status?token={token}") == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode is not None


def test_lab_command_allows_root_only_as_root(monkeypatch):
    import reproduce.lab as lab
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    assert "--allow-root" in lab_command(9999, token="t")
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    cmd = lab_command(9999, token="t")
    assert "--allow-root" not in cmd and "--no-browser" in cmd and "--ServerApp.port=9999" in cmd
