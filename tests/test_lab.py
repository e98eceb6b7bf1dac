"""`make lab`: JupyterLab on 127.0.0.1 with a token. The test starts it on a free port (through
`make lab` when the Makefile has the rule, else the same command), opens a chain notebook through
the REST API, and stops it."""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output" / "lab"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(port: int, token: str) -> list[str]:
    "`make lab` where the Makefile defines it; otherwise the command it runs."
    mk = ROOT / "Makefile"
    if shutil.which("make") and mk.exists() and re.search(r"^lab:", mk.read_text(), re.M):
        return [
            "make",
            "--no-print-directory",
            "-s",
            "lab",
            f"LAB_PORT={port}",
            f"LAB_TOKEN={token}",
        ]
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [
        str(jupyter),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
    ]
    return cmd + (["--allow-root"] if os.geteuid() == 0 else [])


def get(url: str, token: str | None = None, timeout: float = 10):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def lab():
    OUT.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    log = open(OUT / "lab.log", "w")
    env = dict(os.environ)
    proc = subprocess.Popen(
        lab_command(port, token),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        # its own process group: stopped as a whole below
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    "JupyterLab exited with "
                    f"{proc.returncode}:\n{(OUT / 'lab.log').read_text()[-3000:]}"
                )
            try:
                if get(f"{base}/api/status", token, timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() > deadline:
                pytest.fail(
                    "JupyterLab did not answer within 120 "
                    f"s:\n{(OUT / 'lab.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield base, token, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def chain_notebook() -> str:
    """The method notebook of the first registered chain
    (nbs/cobra/02_cobra.ipynb for the COBRA chain)."""
    sys.path.insert(0, str(ROOT))
    from compendium.core.config import papers

    ps = papers(ROOT)
    if not ps:
        return "nbs/cobra/02_cobra.ipynb"
    p = next((p for p in ps if p.id == "cobra"), ps[0])
    return f"nbs/{p.folder or p.id}/{p.notebooks[min(1, len(p.notebooks) - 1)]}.ipynb"


def test_lab_serves_a_chain_notebook(lab):
    base, token, proc = lab
    status, body = get(f"{base}/lab", token)
    assert status == 200 and b"JupyterLab" in body
    assert get(f"{base}/api/contents/nbs", None)[0] == 403, "the API must need the token"
    nb = chain_notebook()
    status, body = get(f"{base}/api/contents/{nb}", token)
    assert status == 200, f"GET /api/contents/{nb}: {status} {body[:300]!r}"
    model = json.loads(body)
    assert model["type"] == "notebook" and model["path"] == nb
    cells = model["content"]["cells"]
    assert (
        cells
        and cells[0]["cell_type"] == "markdown"
        and cells[0]["source"].lstrip().startswith("#")
    )
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), (
        "the papermill parameters cell is missing"
    )
    ks = json.loads(get(f"{base}/api/kernelspecs", token)[1])
    assert "python3" in ks["kernelspecs"]


def test_lab_stops(lab):
    base, token, proc = lab
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        get(f"{base}/api/status", token, timeout=2)
