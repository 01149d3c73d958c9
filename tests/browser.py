"""Pages as a reader's browser shows them: headless Chromium, driven by Playwright, opens a page
served on 127.0.0.1 and reports what a reader would meet.

A page can be well-formed HTML and still fail its reader: a script error, a circuitsvis panel
that mounts blank (near-uniform toy attention once drew white squares), a figure that does not
load, a table pushing the page wider than the window, or a request to a CDN that an offline
machine cannot answer. `Browser.show` measures each of these; `Shown.problems` names those present.

Chromium is Debian's (`apt-get install chromium`; `make test` installs it where none is found);
`LCA_INTERP_CHROMIUM` names another binary. Playwright drives it through `executable_path`, so
Playwright's own browser download, which an offline machine cannot reach, is never needed.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

WINDOW = {"width": 1400, "height": 900}
# Chromium's own background traffic (updates, sync, field trials) would otherwise count against
# "no request leaves the machine" and is refused here anyway.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--disable-default-apps"]
MIN_INK = 0.005  # a drawn canvas: at least this share of its pixels neither blank nor near-white

MEASURE = """() => {
  const ink = canvas => {
    const context = canvas.getContext('2d');
    if (!context || !canvas.width || !canvas.height) return 0;
    const px = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 0; i < px.length; i += 4)
      if (px[i + 3] > 0 && !(px[i] > 245 && px[i + 1] > 245 && px[i + 2] > 245)) inked++;
    return inked / (px.length / 4);
  };
  const views = [...document.querySelectorAll('div[id^="cv-"]')];
  return {
    components: views.map(view => ({id: view.id, elements: view.querySelectorAll('*').length,
      height: view.getBoundingClientRect().height, ink: [...view.querySelectorAll('canvas')].map(ink)})),
    images: [...document.images].map(image => ({src: image.currentSrc.slice(0, 80), complete: image.complete,
      naturalWidth: image.naturalWidth})),
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    tables: [...document.querySelectorAll('table')].filter(table => !table.closest('div[id^="cv-"]'))
      .map(table => [...table.rows].map(row => [...row.cells].map(cell => cell.innerText.trim()))),
  };
}"""


def chromium_path() -> str:
    """The Chromium binary to drive: `LCA_INTERP_CHROMIUM`, else the first on PATH."""
    named = os.environ.get("LCA_INTERP_CHROMIUM")
    found = named or next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not found or not shutil.which(found):
        pytest.fail("the browser checks need Chromium: `apt-get install chromium` (make test does this where it can), "
                    "or set LCA_INTERP_CHROMIUM to a Chromium or Chrome binary.")
    return found


@dataclass
class Shown:
    """What one page showed: what went wrong while it loaded, and what it drew."""

    url: str
    console_errors: list[str]
    offsite_requests: list[str]
    render_calls: int  # `CircuitsVis.render(` calls in the page's source
    components: list[dict]
    images: list[dict]
    overflow: int  # px the page is wider than the window
    tables: list[list[list[str]]]  # each table's rows of cell texts, header row first

    def problems(self) -> list[str]:
        found = [f"console error: {e}" for e in self.console_errors]
        found += [f"request leaving the machine: {u}" for u in self.offsite_requests]
        if len(self.components) != self.render_calls:
            found.append(f"{self.render_calls} circuitsvis views in the source, {len(self.components)} mount points")
        for c in self.components:  # AttentionHeads draws on canvases: a view is drawn where they are inked
            if c["elements"] == 0 or c["height"] < 50 or not c["ink"] or min(c["ink"]) < MIN_INK:
                found.append(f"circuitsvis view {c['id']} is blank: {c['elements']} elements, {c['height']:.0f} px high, "
                             f"inked share of each canvas {[round(i, 4) for i in c['ink']]}")
        found += [f"image not loaded: {i['src']}" for i in self.images if not (i["complete"] and i["naturalWidth"] > 0)]
        if self.overflow > 0:
            found.append(f"the page is {self.overflow} px wider than a {WINDOW['width']} px window")
        return found


class Browser:
    """One headless Chromium; `show(url)` opens a page in a fresh context and measures it.

    Every request is routed: those to the page's own server (or data:/blob: URLs) go through, and
    anything else is refused and recorded, so a page that needs the network fails the check."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)

    def close(self) -> None:
        self._browser.close()
        self._playwright.stop()

    def show(self, url: str) -> Shown:
        home = urlsplit(url).netloc
        errors: list[str] = []
        offsite: list[str] = []

        def route(route):
            target = urlsplit(route.request.url)
            if target.scheme in ("data", "blob") or target.netloc == home:
                route.continue_()
            else:
                offsite.append(route.request.url)
                route.abort()

        context = self._browser.new_context(viewport=WINDOW)
        try:
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            response = page.goto(url, wait_until="load")
            if response is None or not response.ok:
                errors.append(f"{url} answered {response.status if response else 'nothing'}")
            page.wait_for_load_state("networkidle")
            source = page.content() if response is None else response.text()
            try:  # circuitsvis renders with React after the load event; give a blank view a moment to mount
                page.wait_for_function("() => [...document.querySelectorAll('div[id^=\"cv-\"]')]"
                                       ".every(view => view.querySelector('canvas'))", timeout=5000)
            except Exception:  # noqa: BLE001 -- what stayed blank is reported by problems()
                pass
            measured = page.evaluate(MEASURE)
        finally:
            context.close()
        return Shown(url=url, console_errors=errors, offsite_requests=offsite,
                     render_calls=source.count("CircuitsVis.render("), **measured)


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`folder` on an http server at 127.0.0.1 (a docs site's search needs http, not file://);
    yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 -- the signature is http.server's
        pass
