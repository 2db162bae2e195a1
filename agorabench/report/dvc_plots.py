"""The HTML template `dvc plots show` fills (.dvc/config: plots.html_template), with the chart library
inside it, so the page it writes draws offline. DVC's own page loads Vega, Vega-Lite and Vega-Embed
from a CDN and is blank without a network; a template without DVC's {scripts} placeholder drops
those tags, and ours carries the same libraries inline.

The libraries come from the `panel` wheel (requirements/assets.txt, installed without its
dependencies; only these three files are read): the majors DVC's plot templates are written for.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from agorabench.files import write_atomic

# In the order a page must load them: Vega-Lite needs Vega, Vega-Embed both.
VEGA_FILES = ("vega@5", "vega-lite@5", "vega-embed@6")
VEGA_PACKAGE = "panel"
VEGA_DIR = "panel/dist/bundled/vegaplot"


def vega_scripts() -> list[Path]:
    """The three library files, checked to exist; a one-line error says how to install them."""
    fix = "run `make install` (or pip install --no-deps -r requirements/assets.txt)"
    try:
        dist = importlib.metadata.distribution(VEGA_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"the chart library for `dvc plots show` comes from the {VEGA_PACKAGE} package, "
                         f"which is not installed; {fix}") from None
    paths = [Path(dist.locate_file(f"{VEGA_DIR}/{name}")) for name in VEGA_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"{VEGA_PACKAGE} {dist.version} lacks {', '.join(missing)} under {VEGA_DIR}; "
                         f"install the version requirements/assets.txt pins: {fix}")
    return paths


def render_template() -> str:
    """DVC's page layout with the libraries inline and {plot_divs}, where DVC puts each plot."""
    scripts = []
    for path in vega_scripts():
        js = path.read_text(encoding="utf-8")
        if "</script" in js.lower():  # would end the inline tag early and break the page
            raise ValueError(f"{path}: contains '</script', so it cannot be inlined; pin another version")
        scripts.append(f"<script>/* {path.name} */\n{js}\n</script>")
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>AgoraBench plots (DVC)</title>\n"
            + "\n".join(scripts)
            + "\n<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")


def write_template(path: str | Path) -> Path:
    return write_atomic(Path(path), render_template(), "`agora report`")
