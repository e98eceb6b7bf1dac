"""The docs site: `docs/build.py` (what `make docs` runs) builds it offline; a static crawl checks
every internal link and image; headless Chromium (Debian's package, installed by
`.ci/install-chromium.sh`) opens the home page, a paper page and the claims ledger from a server on
127.0.0.1, with every other host unresolvable, and saves screenshots under test-output/docs/."""

import base64
import functools
import html
import html.parser
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output" / "docs"
SITE = OUT / "site"
sys.path.insert(0, str(ROOT))


def registered():
    from compendium.core.config import papers

    return papers(ROOT)


# ---------------------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def site() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(SITE, ignore_errors=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("COMPENDIUM_OUT", None)
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(SITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (OUT / "build.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, (
        f"docs build failed ({r.returncode}):\n{(r.stdout + r.stderr)[-4000:]}"
    )
    print(f"docs built in {time.time() - t0:.1f}s")
    return SITE


def test_pages_exist(site):
    for page in [
        "index.html",
        "claims.html",
        "core/index.html",
        "core/config.html",
        "core/claims.html",
    ]:
        assert (site / page).is_file(), page
    for p in registered():
        assert (site / p.id / "index.html").is_file(), f"no paper page for {p.id}"
        for stem in p.notebooks:
            import re

            name = re.sub(r"^\d+[a-zA-Z0-9]*_", "", stem.lower())
            assert (site / p.id / f"{name}.html").is_file() or (
                site / p.id / f"{stem.lower()}.html"
            ).is_file(), f"{p.id}/{stem}"


# ------------------------------------------------------------------------------------- static crawl
class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.imgs = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("id", "name"):
            if a.get(k):
                self.ids.add(a[k])
        if tag == "a" and a.get("href"):
            self.refs.append(("a", a["href"]))
        if tag in ("img", "script", "source") and a.get("src"):
            self.refs.append((tag, a["src"]))
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if tag == "link" and a.get("href"):
            self.refs.append(("link", a["href"]))


def _parse(f: Path) -> _Refs:
    p = _Refs()
    p.feed(f.read_text(errors="replace"))
    return p


def _internal(ref: str) -> bool:
    return not (urlsplit(ref).scheme or ref.startswith("//"))


def test_internal_links_and_images(site):
    pages = {f: _parse(f) for f in site.rglob("*.html")}
    broken, anchors, images = [], [], 0
    for f, p in pages.items():
        for kind, ref in p.refs:
            if not _internal(ref):
                continue
            u = urlsplit(ref)
            target = f if not u.path else (f.parent / unquote(u.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{f.relative_to(site)}: {kind} -> {ref}")
                continue
            if kind == "img":
                images += 1
                head = target.read_bytes()[:256]
                if target.stat().st_size == 0 or not (
                    head.startswith(b"\x89PNG")
                    or b"<svg" in head
                    or head[:3] == b"\xff\xd8\xff"
                    or head.startswith(b"<?xml")
                    or head[:4] == b"GIF8"
                ):
                    broken.append(f"{f.relative_to(site)}: image {ref} is empty or not an image")
            if (
                u.fragment
                and target.suffix == ".html"
                and target in pages
                and unquote(u.fragment) not in pages[target].ids
            ):
                anchors.append(f"{f.relative_to(site)}: {ref} (no such anchor)")
    assert not broken, f"{len(broken)} broken internal links or images:\n" + "\n".join(broken[:40])
    assert not anchors, f"{len(anchors)} links to missing anchors:\n" + "\n".join(anchors[:40])
    assert images > 0


def test_every_chain_on_the_site(site):
    """Each registered paper's committed figures are on
    its page, and each of its claims is in the ledger."""
    ledger = (site / "claims.html").read_text()
    for p in registered():
        page = _parse(site / p.id / "index.html")
        shown = {Path(unquote(s)).stem for s in page.imgs}
        figs = sorted((ROOT / "figures" / p.id).glob("*.png"))
        for f in figs:
            # Sphinx gives same-named images of different folders a numbered name in _images/
            # (cobra's robustness.png, then e2rag's robustness1.png)
            seen = f.stem in shown or any(
                s.startswith(f.stem) and s[len(f.stem) :].isdigit() for s in shown
            )
            assert seen, f"{p.id}: figure {f.name} is not on the paper page"
        claims = ROOT / "figures" / p.id / "claims.json"
        if claims.exists():
            for c in json.loads(claims.read_text())["claims"]:
                assert f"<p>{html.escape(c['id'])}</p>" in ledger, (
                    f"{p.id}: claim {c['id']} is not in the ledger"
                )


# -------------------------------------------------------------------------------------- the browser
class _Handler(http.server.SimpleHTTPRequestHandler):
    log: list = []

    def log_message(self, *a):
        pass

    def log_request(self, code="-", size="-"):
        _Handler.log.append((self.path, int(code) if str(code).isdigit() else 0))


@pytest.fixture(scope="module")
def server(site):
    _Handler.log = []
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(site))
    )
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _browser_binaries():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        r = subprocess.run(
            ["bash", str(ROOT / ".ci" / "install-chromium.sh")],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if r.returncode != 0:
            pytest.fail(
                "Chromium is missing and .ci/install-chromium.sh "
                f"failed:\n{(r.stdout + r.stderr)[-2000:]}"
            )
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser_binaries()
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    for a in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # offline: every host but the local server fails to
        # resolve, so a CDN dependency shows up as an error
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=o)
    d.set_page_load_timeout(60)
    d.set_script_timeout(60)
    yield d
    d.quit()


def _open(browser, server, page: str, shot: str) -> dict:
    "Load `page`, wait for MathJax, save a full-page screenshot, and return what the page shows."
    _Handler.log.clear()
    browser.get(f"{server}/{page}")
    browser.execute_async_script("""const done = arguments[arguments.length - 1];
        const ready = () => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise : Promise.resolve();
        if (document.readyState === 'complete') ready().then(() => done(true), () => done(false));
        else window.addEventListener('load', () => ready().then(() => done(true), () => done(false)));""")
    time.sleep(0.3)
    info = browser.execute_script("""
        const art = document.querySelector('article') || document.body;
        const imgs = Array.from(document.images);
        return {title: document.title, h1: (art.querySelector('h1') || {}).innerText || '',
                text: art.innerText, n_text: art.innerText.length,
                images: imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
                math: document.querySelectorAll('.math, div.math, span.math').length,
                mjx: document.querySelectorAll('mjx-container').length,
                badges: document.querySelectorAll('.badge').length,
                tables: art.querySelectorAll('table').length,
                resources: performance.getEntriesByType('resource').map(e => ({name: e.name, status: e.responseStatus || 0}))};""")
    r = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    (OUT / "screenshots").mkdir(parents=True, exist_ok=True)
    (OUT / "screenshots" / shot).write_bytes(base64.b64decode(r["data"]))
    info["log"] = list(_Handler.log)
    info["console"] = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    return info


def _check_rendered(info, server, page):
    assert info["h1"].strip(), f"{page}: no title heading (did the page render?)"
    assert info["n_text"] > 300, f"{page}: only {info['n_text']} characters of content"
    for bad in ("```", ":::{", "{toctree}", "&lt;span", "Traceback (most recent call last)"):
        assert bad not in info["text"], (
            f"{page}: unrendered markup or an error on the page: {bad!r}"
        )
    missing = [i["src"] for i in info["images"] if not i["ok"]]
    assert not missing, f"{page}: images that did not load: {missing}"
    failed = [f"{p} -> {c}" for p, c in info["log"] if c >= 400]
    assert not failed, f"{page}: requests that failed: {failed}"
    foreign = [r["name"] for r in info["resources"] if not r["name"].startswith(server)]
    assert not foreign, (
        f"{page}: resources from outside the site (the pages must work offline): {foreign}"
    )
    assert not info["console"], f"{page}: errors in the browser console: {info['console'][:5]}"
    if info["math"]:
        assert info["mjx"] > 0, (
            f"{page}: {info['math']} math elements but MathJax rendered none (offline "
            "MathJax broken?)"
        )


def test_home_page(browser, server):
    info = _open(browser, server, "index.html", "home.png")
    _check_rendered(info, server, "index.html")
    ps = registered()
    for p in ps:
        assert p.title.split(":")[0].strip() in info["text"], f"home page does not list {p.id}"
    if ps:
        assert info["tables"] >= 1 and info["badges"] >= len(ps)


def test_paper_page(browser, server):
    ps = registered()
    if not ps:
        pytest.skip("no paper registered in settings.ini")
    # the first registered paper with committed figures (else the first one)
    p = next((p for p in ps if any((ROOT / "figures" / p.id).glob("*.png"))), ps[0])
    info = _open(browser, server, f"{p.id}/index.html", f"paper-{p.id}.png")
    _check_rendered(info, server, f"{p.id}/index.html")
    for section in (
        "Overview",
        "Method",
        "Usage",
        "Results",
        "Deviations from the paper",
        "Figures",
    ):
        assert f"\n{section}\n" in f"\n{info['text']}\n", (
            f"{p.id}: the paper page has no {section!r} section"
        )
    n_figs = len(list((ROOT / "figures" / p.id).glob("*.png")))
    assert sum(1 for i in info["images"] if "/_images/" in i["src"]) >= n_figs
    if n_figs:
        assert "commit" in info["text"] and "seed" in info["text"]


def test_ledger_page(browser, server):
    info = _open(browser, server, "claims.html", "ledger.png")
    _check_rendered(info, server, "claims.html")
    n = sum(
        len(json.loads(f.read_text())["claims"])
        for p in registered()
        if (f := ROOT / "figures" / p.id / "claims.json").exists()
    )
    assert info["badges"] >= n, (
        f"ledger shows {info['badges']} status badges for {n} committed claims"
    )
