"""Turn the report's HTML into a PDF with WeasyPrint, fetching nothing but data: URIs."""

from __future__ import annotations

from typing import Any

from reportgen.errors import RenderError


def data_only_fetcher() -> Any:
    """Return a WeasyPrint URL fetcher that serves data: URIs and refuses every other scheme."""
    from weasyprint import urls

    # WeasyPrint refuses other schemes itself; file://, http:// never reach the network or disk.
    return urls.URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)


def render_pdf(html: str) -> bytes:
    """Render HTML to PDF bytes."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: pango/cairo libraries missing
        raise RenderError(f"PDF output needs WeasyPrint and the pango library: {exc}") from None
    try:
        doc = weasyprint.HTML(string=html, url_fetcher=data_only_fetcher(), base_url=None)
        pdf = doc.write_pdf(custom_metadata=False)
    except Exception as exc:
        raise RenderError(f"WeasyPrint failed: {exc}") from exc
    if pdf is None:
        raise RenderError("WeasyPrint returned no PDF")
    return pdf
