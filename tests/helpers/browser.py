"""Report pages (sfm_reweight/report.py) for the tests, the large-model benchmark and the README's
screenshot: the data a page carries, and the page in headless Chromium (playwright driving the
system's Chromium; no browser download).

    python tests/helpers/browser.py outputs/reconstruct/report.html docs/report_main_job.png [--select NAME]

WebGL runs on SwiftShader (Chromium's CPU renderer); the network stays closed.
"""

import argparse
import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-angle=swiftshader",  # WebGL on the CPU, where there is no GPU
    "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1400, "height": 900}


def report_data(path: Path) -> dict[str, Any]:
    """The data a report page carries (the JSON its viewer reads)."""
    page = Path(path).read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)[1])


def chromium() -> str | None:
    """The system's Chromium, None where there is none."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable() -> str | None:
    """Why no report can be opened here (no Chromium, no playwright), None when one can."""
    if chromium() is None:
        return "no chromium on PATH (scripts/install_browser.sh installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@contextmanager
def report_page(path: Path, timeout_s: float = 120) -> Iterator[tuple[Any, list[str], float]]:
    """A page with the report at `path` loaded and drawn: (page, the JavaScript errors so far, which
    grows while the page lives: console errors and uncaught exceptions, seconds from navigation to
    the first frame drawn)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            start = time.perf_counter()
            page.goto(Path(path).resolve().as_uri(), timeout=timeout_s * 1000)
            page.wait_for_function("document.body.dataset.ready === 'true'", timeout=timeout_s * 1000)
            yield page, errors, time.perf_counter() - start
        finally:
            browser.close()


def screenshot(page: Any, path: Path, select: str | None = None) -> Path:
    """A screenshot of the page's first screen (the 3D view and the side panel), with the camera
    `select` chosen (its photo and keypoints in the panel)."""
    if select is not None:
        page.evaluate("name => window.reportViewer.select(name)", select)
        page.wait_for_timeout(500)  # the photo decodes, the frame is drawn
    page.screenshot(path=str(path))
    return Path(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--select", help="a camera's name: its photo and keypoints in the side panel")
    args = parser.parse_args()
    with report_page(args.report) as (page, errors, seconds):
        screenshot(page, args.png, args.select)
    print(f"{args.png}: loaded in {seconds:.1f} s; JavaScript errors: {errors or 'none'}")
