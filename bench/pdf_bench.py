"""WeasyPrint time of one report as the brief PDF and as `pdf: full`, per page, from the same analysis."""

from __future__ import annotations

import io
import json
import sys
import time


def main(config: str) -> dict[str, float]:
    """Analyse config once, then render its PDF in both layouts and time each render."""
    from pypdf import PdfReader

    from reportgen.config import load_config
    from reportgen.figures import draw_all
    from reportgen.pipeline import BuildOptions, build_report_model
    from reportgen.presentation import present
    from reportgen.render.html import render_html
    from reportgen.render.pdf import render_pdf

    loaded = load_config(config)
    report = build_report_model(loaded, BuildOptions(force=True))
    out: dict[str, float] = {}
    for layout in ("brief", "full"):
        page = present(report, pdf_full=layout == "full")
        figures = draw_all(report, page.figure_specs, 2)
        html = render_html(page, figures, for_pdf=True)
        t = time.perf_counter()
        pdf = render_pdf(html)
        out[f"{layout}_s"] = time.perf_counter() - t
        out[f"{layout}_pages"] = float(len(PdfReader(io.BytesIO(pdf)).pages))
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
