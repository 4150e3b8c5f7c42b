"""Fill the Jinja2 templates into one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from reportgen import formatting
from reportgen.errors import RenderError
from reportgen.figures import FigureData
from reportgen.presentation import Presentation
from reportgen.report_model import slugify
from reportgen.thresholds import DEFAULT

# No network, ever: only inline styles/scripts and data: images.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'"
)


def template_dir() -> Path:
    """Return the templates folder: packaged copy first, then the source tree's."""
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "templates"


def make_env() -> jinja2.Environment:
    """Create the one Jinja environment: autoescaped, strict, with number filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(formatting.FILTERS)
    env.filters["slug"] = slugify
    env.filters["stat"] = formatting.stat_cell
    env.globals["STAT_COLUMNS"] = formatting.STAT_COLUMNS
    env.globals["CSP"] = CSP
    # Captions quote the bands the verdicts and figures use, never copies of the numbers.
    env.globals["THRESHOLDS"] = DEFAULT
    return env


def render_template(name: str, **context: Any) -> str:
    """Render one page template with the shared CSS and script inlined."""
    env = make_env()
    css = (template_dir() / "style.css").read_text(encoding="utf-8")
    script = (template_dir() / "report.js").read_text(encoding="utf-8")
    try:
        return env.get_template(name).render(css=css, script=script, **context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template error: {exc}") from exc


def render_html(page: Presentation, figures: dict[str, FigureData], *, for_pdf: bool = False) -> str:
    """Render the report; for_pdf lays out the brief (or, with pdf_full, the complete) printed report."""
    # The printed report leaves out bulk unless the full archival PDF was asked for.
    bulk = not for_pdf or page.pdf_full
    return render_template("report.html.j2", page=page, report=page.report, figures=figures, for_pdf=for_pdf, bulk=bulk)
