"""Open the report in headless Chromium: no console errors, no network, links resolve, both widths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.browser

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_report_in_browser(browser, built: Path, tmp_path: Path, width: int) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 900})
    console: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    url = (built / "report.html").resolve().as_uri()
    page.goto(url)
    page.wait_for_load_state("load")
    assert console == []
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    broken = page.evaluate(
        """() => Array.from(document.querySelectorAll('a[href^="#"]'))
              .map(a => a.getAttribute('href').slice(1))
              .filter(id => !document.getElementById(id))"""
    )
    assert broken == []
    # Nothing wider than the viewport: the page never scrolls sideways (tables scroll inside their box).
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1
    images = page.evaluate("() => Array.from(document.images).map(i => [i.naturalWidth > 0, i.alt.length > 0])")
    assert images and all(ok and alt for ok, alt in images)
    shot = tmp_path / f"report-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_tables_sort_on_click(browser, built: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((built / "report.html").resolve().as_uri())
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    table = page.locator("#appendix table.sortable").first
    heads = table.locator("thead th").all_inner_texts()
    col = heads.index("std")
    column = table.locator("thead th").nth(col)
    column.click()
    first = table.locator(f"tbody tr td:nth-child({col + 1})").all_inner_texts()
    values = [float(v.replace("−", "-")) for v in first]
    assert values == sorted(values)
    column.click()
    again = [float(v.replace("−", "-")) for v in table.locator(f"tbody tr td:nth-child({col + 1})").all_inner_texts()]
    assert again == sorted(values, reverse=True)
    # Kurtosis is NaN for the constant (all-zero) biases: those rows go last in both directions.
    col = heads.index("kurt.")
    kurt = table.locator("thead th").nth(col)
    for _ in range(2):
        kurt.click()
        cells = table.locator(f"tbody tr td:nth-child({col + 1})").all_inner_texts()
        assert (
            "NaN" in cells and "NaN" not in cells[: cells.index("NaN")] and set(cells[cells.index("NaN") :]) == {"NaN"}
        )
        numbers = [float(v.replace("−", "-")) for v in cells[: cells.index("NaN")]]
        assert numbers in (sorted(numbers), sorted(numbers, reverse=True))
    page.close()


def test_wide_tables_fit_a_1280_window(browser, built: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((built / "report.html").resolve().as_uri())
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    wide = page.evaluate(
        """() => Array.from(document.querySelectorAll('.table-wrap'))
              .filter(w => w.scrollWidth > w.clientWidth + 1).map(w => w.closest('section').id)"""
    )
    assert wide == []
    page.close()


def test_alert_links_open_the_tensor_view_with_its_histogram(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_presentation import alerted_report

    from reportgen.figures import draw_all
    from reportgen.presentation import present
    from reportgen.render.html import render_html

    report = alerted_report()
    layout = present(report)
    (tmp_path / "report.html").write_text(render_html(layout, draw_all(report, layout.figure_specs)))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tmp_path / "report.html").resolve().as_uri())
    hrefs = page.evaluate(
        "() => Array.from(document.querySelectorAll('#alerts td a')).map(a => a.getAttribute('href'))"
    )
    assert len(hrefs) >= len(report.alerts) > 0
    for href in hrefs:
        view = page.locator(f"[id='{href[1:]}']")
        assert view.get_attribute("class") == "tensor"
        assert view.locator("img").count() + view.locator(".sentence").count() >= 1
    page.locator("#alerts td a").first.click()
    assert page.evaluate("() => document.querySelector(':target').className") == "tensor"
    page.close()


def test_answer_and_findings_come_first_on_a_phone(browser, built: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 390, "height": 800})
    page.goto((built / "report.html").resolve().as_uri())
    tops = page.evaluate(
        """() => ['answer', 'findings', 'appendix'].map(id => document.getElementById(id).getBoundingClientRect().top)
              .concat([document.querySelector('nav.toc').getBoundingClientRect().top])"""
    )
    answer, findings, appendix, toc = tops
    assert answer < 200 and answer < findings < appendix and findings < toc
    page.close()
