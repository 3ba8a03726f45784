"""The report in a real browser: Debian's headless Chromium, driven by Playwright."""

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # starts a browser


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def test_report_renders_in_chromium(browser, tiny_run):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((tiny_run / "report.html").resolve().as_uri())
    page.wait_for_load_state("load")
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert len(widths) >= 6 and all(w > 0 for w in widths)
    assert page.locator("#summary-table tbody tr").count() >= 4
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()


def test_report_reads_at_a_glance(browser, tiny_run):
    """First screen: the verdict per model as a picture (each backend's speed against the fastest,
    with intervals), above the tables; contents that link to every section; a table that sorts on
    click; nothing wider than a 1280 px window, no picture over another element."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tiny_run / "report.html").resolve().as_uri())
    page.wait_for_load_state("load")
    charts = page.locator("#at-a-glance ~ * img[alt$=\"speed against the fastest\"]")
    assert charts.count() == 2  # one per model
    first = charts.nth(0).bounding_box()
    assert first["y"] < 900 and first["y"] + first["height"] * 0.5 < 900  # the picture leads the first screen
    glance = page.locator("#glance-mlp")
    assert glance.is_visible() and glance.bounding_box()["y"] > charts.nth(1).bounding_box()["y"]  # tables after
    assert "★" in glance.inner_text() and "backend" in glance.inner_text()
    assert "How sure:" in page.inner_text("p.trust")  # how far to trust it, right after the pictures
    boxes = page.eval_on_selector_all("h1, h2, h3, p, img, table, nav", "els => els.filter(e => e.checkVisibility())"
                                      ".map(e => {"  # a collapsed table is laid out but not shown
                                      "const r = e.getBoundingClientRect(); return [e.tagName, r.x, r.y, r.width, "
                                      "r.height]})")
    images = [b for b in boxes if b[0] == "IMG"]
    for tag, x, y, w, h in boxes:  # no picture lies over another block (nested blocks aside)
        for _, ix, iy, iw, ih in images:
            if (x, y, w, h) != (ix, iy, iw, ih) and tag != "P":
                overlap_x = min(x + w, ix + iw) - max(x, ix)
                overlap_y = min(y + h, iy + ih) - max(y, iy)
                assert overlap_x <= 1 or overlap_y <= 1, (tag, x, y, w, h, ix, iy, iw, ih)
    # no header breaks inside a word: every header's words fit its width
    broken = page.eval_on_selector_all("table.t th", "hs => hs.filter(h => h.scrollWidth > h.clientWidth + 1)"
                                                     ".map(h => h.textContent)")
    assert broken == [], broken
    # the glance sorts by the numbers behind its text ("1.28M/s" is the largest, not the smallest)
    header = "inference, batch 32"
    page.click(f"#glance-mlp thead th[title='{header}']")
    idx = page.eval_on_selector_all("#glance-mlp thead th", f"hs => hs.findIndex(h => h.title == '{header}')")
    keys = page.eval_on_selector_all("#glance-mlp tbody tr", f"rs => rs.map(r => r.cells[{idx}].dataset.v)")
    numbers = [float(k) for k in keys if k is not None]
    assert len(numbers) >= 2 and numbers == sorted(numbers)
    links = page.eval_on_selector_all("nav.toc a", "els => els.map(a => a.getAttribute('href'))")
    assert len(links) >= 8 and "#summary" in links and "#memory" in links
    for href in links:
        assert page.locator(href).count() == 1, href
    page.click("nav.toc a[href='#memory']")
    assert page.evaluate("window.scrollY") > 900

    def column(table, header):
        idx = page.eval_on_selector_all(f"#{table} thead th", f"hs => hs.findIndex(h => h.title == '{header}')")
        return page.eval_on_selector_all(f"#{table} tbody tr", f"rs => rs.map(r => r.cells[{idx}].dataset.v)")

    folded = page.eval_on_selector_all("details.long", "ds => ds.map(d => [d.open, d.querySelectorAll('tbody tr')"
                                                       ".length, d.getBoundingClientRect().height])")
    assert all(not is_open and rows > 12 and height < 60 for is_open, rows, height in folded), folded
    summary = page.locator("details.long:has(#infer-table) > summary")
    if summary.count():  # a long table opens from its one-line summary
        summary.click()
    page.click("#infer-table thead th[title='p50_latency_ms']")
    values = [float(v) for v in column("infer-table", "p50_latency_ms")]
    assert values == sorted(values) and len(values) >= 4
    page.click("#infer-table thead th[title='p50_latency_ms']")
    assert [float(v) for v in column("infer-table", "p50_latency_ms")] == sorted(values, reverse=True)
    shown = page.inner_text("#infer-table tbody")
    assert "µs" in shown or " ms" in shown  # latency in human units
    page.evaluate("document.querySelectorAll('details.long').forEach(d => d.open = true)")  # every table shown
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], width
    wide = page.eval_on_selector_all("div.tw", "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                                               ".map(e => e.firstChild.id)")
    assert wide == [], wide
    page.close()
