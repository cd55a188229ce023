"""make lab: JupyterLab on the notebooks, as root or as a user, headless-friendly.

    python -m reproduce.lab                 # http://127.0.0.1:8888/lab?token=... is printed; Ctrl-C stops it
    python -m reproduce.lab --port 9000 --ip 0.0.0.0     # reachable from other machines (mind the token)

The server opens no browser (on a headless machine there is none: open the printed URL, or forward the port
with ``ssh -L 8888:127.0.0.1:8888 host``). As root, Jupyter refuses to start without ``--allow-root``; this adds
it, because containers and the README's data step run as root. The notebooks name the project's kernel
(``crossflow``, registered by ``make venv`` with ``OMP_WAIT_POLICY=PASSIVE`` in its environment).
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lab_command(port: int = 8888, ip: str = "127.0.0.1", token: str | None = None,
                root_dir: str | Path = ROOT / "notebooks") -> list[str]:
    """The ``jupyter lab`` command line (run with this Python, so the venv's Jupyter serves)."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}"]
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m reproduce.lab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", 8888)))
    ap.add_argument("--ip", default=os.environ.get("LAB_IP", "127.0.0.1"))
    a = ap.parse_args(argv)
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        raise SystemExit("JupyterLab is not installed in this environment: pip install -e '.[lab]' (make lab does)")
    token = secrets.token_hex(24)
    url = f"http://{'127.0.0.1' if a.ip in ('0.0.0.0', '') else a.ip}:{a.port}/lab?token={token}"
    print(f"[lab] JupyterLab on {ROOT / 'notebooks'}; open {url}\n[lab] Ctrl-C stops it.", flush=True)
    os.execv(sys.executable, lab_command(a.port, a.ip, token))


if __name__ == "__main__":
    main()
