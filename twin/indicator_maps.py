"""Coverage indicators as pictures: a map per indicator, and one HTML report of them all.

A map shows the measured area, its covered and uncovered parts (or the counted and
missing things: lamps, pipes, buildings), with a legend, a scale bar and the district
outlines; the report puts every indicator's value, target, map, district table and gap
on one self-contained page (maps inlined as PNG).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
# WenQuanYi ships one weight; matplotlib says so on every map otherwise
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.patches import Patch, PathPatch, Rectangle  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from twin.indicators import IndicatorResult  # noqa: E402

__all__ = ["draw_maps", "map_png", "write_report"]

AREA = "#e8e6df"
COVERED = "#4e9a5b"
UNCOVERED = "#d1483d"
MARK_COLOURS = ["#1f5fa8", "#e08a1e", "#7a3fa0", "#222222"]
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback",
             "AR PL UMing CN")


def _font_family() -> list[str]:
    """Fonts for Chinese district names, when the machine has one."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed.intersection(CJK_FONTS):
        # matplotlib's font cache predates a font installed since: look for one by file name
        for path in font_manager.findSystemFonts():
            if any(tag in Path(path).name.lower() for tag in ("wqy", "notosanscjk", "droidsansfallback")):
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
    # Latin text in DejaVu; matplotlib falls back along the list for Chinese glyphs
    return ["DejaVu Sans"] + [f for f in CJK_FONTS if f in installed]


def _polygon_path(geom: shapely.Geometry) -> MplPath | None:
    vertices, codes = [], []
    for polygon in shapely.get_parts(geom):
        if polygon.geom_type != "Polygon" or polygon.is_empty:
            continue
        for ring in [polygon.exterior, *polygon.interiors]:
            xy = np.asarray(ring.coords)[:, :2]
            vertices.append(xy)
            codes.append([MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 2) + [MplPath.CLOSEPOLY])
    if not vertices:
        return None
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _draw(ax, geom: shapely.Geometry | None, colour: str, *, alpha: float = 1.0, zorder: int = 1,
          hatch: str | None = None, size: float = 6.0) -> bool:
    """Draw polygons, lines or points of `geom`; True when something was drawn."""
    if geom is None or geom.is_empty:
        return False
    parts = shapely.get_parts(geom)
    kinds = shapely.get_type_id(parts)
    drawn = False
    polygons = parts[(kinds == 3) | (kinds == 6)]
    if len(polygons):
        path = _polygon_path(shapely.union_all(polygons) if len(polygons) > 1 else polygons[0])
        if path is not None:
            ax.add_patch(PathPatch(path, facecolor=colour, edgecolor=colour if hatch is None else "white",
                                   linewidth=0.3, alpha=alpha, zorder=zorder, hatch=hatch))
            drawn = True
    lines = parts[(kinds == 1) | (kinds == 5)]
    if len(lines):
        segments = [np.asarray(line.coords)[:, :2] for line in shapely.get_parts(lines)]
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=1.2, zorder=zorder + 1, alpha=alpha))
        drawn = True
    points = parts[(kinds == 0) | (kinds == 4)]
    if len(points):
        xy = shapely.get_coordinates(points)
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c=colour, zorder=zorder + 2, linewidths=0)
        drawn = True
    return drawn


def _scale_bar(ax) -> None:
    """A scale bar of a round length, about a fifth of the map's width (axes are metres)."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    target = (x1 - x0) / 5
    step = 10 ** math.floor(math.log10(target))
    length = max(m * step for m in (1, 2, 5) if m * step <= target)
    bx, by = x0 + (x1 - x0) * 0.04, y0 + (y1 - y0) * 0.04
    height = (y1 - y0) * 0.012
    ax.add_patch(Rectangle((bx, by), length / 2, height, facecolor="black", zorder=10))
    ax.add_patch(Rectangle((bx + length / 2, by), length / 2, height, facecolor="white", edgecolor="black",
                           linewidth=0.6, zorder=10))
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(bx + length, by + height * 1.8, label, ha="right", va="bottom", fontsize=7, zorder=10)
    ax.annotate("N", xy=(x1 - (x1 - x0) * 0.04, y1 - (y1 - y0) * 0.05), xytext=(x1 - (x1 - x0) * 0.04,
                y1 - (y1 - y0) * 0.15), ha="center", fontsize=8, arrowprops={"arrowstyle": "-|>", "color": "black"})


def _value_text(result: IndicatorResult) -> str:
    if result.value is None:
        return result.reason or "not measurable"
    shown = f"{result.value:.1%}" if result.unit == "ratio" else f"{result.value:.2f} km"
    goal = f"{result.target:.0%}" if result.unit == "ratio" else f"{result.target:g} km"
    verdict = "met" if result.met else "not met"
    return f"{shown} (target {result.compare} {goal}: {verdict})"


def _panel(ax, result: IndicatorResult, districts: shapely.Geometry | None) -> None:
    m = result.measured
    handles = []
    if m is not None:
        if _draw(ax, m.area, AREA, zorder=1):
            handles.append(Patch(facecolor=AREA, label="measured area"))
        if _draw(ax, m.covered, COVERED, alpha=0.85, zorder=2):
            handles.append(Patch(facecolor=COVERED, alpha=0.85, label="covered"))
        if _draw(ax, m.uncovered, UNCOVERED, alpha=0.8, zorder=3):
            handles.append(Patch(facecolor=UNCOVERED, alpha=0.8, label="not covered"))
        for k, (label, geom) in enumerate(m.marks.items()):
            geom = geom() if callable(geom) else geom
            colour = UNCOVERED if label.startswith(("other", "unmonitored", "combined", "missing", "farthest")) \
                else MARK_COLOURS[k % len(MARK_COLOURS)]
            if label == "missing sheets":
                if _draw(ax, shapely.boundary(geom), UNCOVERED, zorder=5):
                    handles.append(Patch(facecolor="none", edgecolor=UNCOVERED, label="missing sheets"))
                continue
            if _draw(ax, geom, colour, zorder=4, size=30 if label == "farthest point" else 5):
                handles.append(Patch(facecolor=colour, label=label))
    if districts is not None and not districts.is_empty:
        _draw(ax, shapely.union_all(shapely.boundary(shapely.get_parts(districts))), "#555555", zorder=6)
        handles.append(Patch(facecolor="none", edgecolor="#555555", label="district boundaries"))
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.margins(0.04)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{result.title}\n{_value_text(result)}", fontsize=8.5)
    if ax.has_data() or ax.patches:
        _scale_bar(ax)
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=6.5, framealpha=0.85)


def map_png(result: IndicatorResult, districts: shapely.Geometry | None = None, *, dpi: int = 110) -> bytes:
    """One indicator's map as PNG bytes."""
    with plt.rc_context({"font.family": _font_family()}):
        fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=dpi)
        _panel(ax, result, districts)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
    return buffer.getvalue()


def draw_maps(results: Sequence[IndicatorResult], out: str | Path, districts: shapely.Geometry | None = None,
              *, dpi: int = 110) -> Path:
    """The maps of several indicators, one panel each, in one PNG."""
    out = Path(out)
    shown = [r for r in results if r.measured is not None]
    if not shown:
        raise ValueError("no indicator to draw: none was measurable")
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    with plt.rc_context({"font.family": _font_family()}):
        fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 4.9 * rows), dpi=dpi, squeeze=False)
        for ax, result in zip(axes.ravel(), shown):
            _panel(ax, result, districts)
        for ax in axes.ravel()[len(shown):]:
            ax.axis("off")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        plt.close(fig)
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" if unit == "ratio" else f"{value:.2f} km"


def _gap_table(result: IndicatorResult) -> str:
    if not result.gap:
        return ""
    keys = [k for k in result.gap[0] if k not in ("centroid", "farthest_point")]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(item.get(k)))}</td>" for k in keys) + "</tr>"
                   for item in result.gap)
    return f"<details><summary>Where the gap is ({len(result.gap)} listed)</summary><table><tr>{head}</tr>{body}</table></details>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.1f}"
    return "" if value is None else str(value)


def write_report(results: Sequence[IndicatorResult], out: str | Path, *, city: str = "",
                 districts: shapely.Geometry | None = None, skipped: Sequence[str] = ()) -> Path:
    """One self-contained HTML page: the summary, then each indicator's map, districts and gap."""
    out = Path(out)
    rows = []
    sections = []
    for r in results:
        verdict = "—" if r.met is None else ("met" if r.met else "not met")
        css = "" if r.met is None else ("met" if r.met else "miss")
        stars = "—" if r.stars is None else "★" * r.stars + "☆" * (5 - r.stars)
        rows.append(f"<tr><td><a href='#{r.indicator}'>{html.escape(r.title)}</a></td>"
                    f"<td class=num>{_fmt(r.value, r.unit)}</td><td class=num>{html.escape(r.compare)} "
                    f"{_fmt(r.target, r.unit)}</td><td class={css}>{verdict}</td><td>{stars}</td></tr>")
        png = base64.b64encode(map_png(r, districts)).decode() if r.measured is not None else None
        district_rows = "".join(
            f"<tr><td>{html.escape(d.district or '')}</td><td class=num>{_fmt(d.value, d.unit)}</td>"
            f"<td class={'' if d.met is None else ('met' if d.met else 'miss')}>"
            f"{'—' if d.met is None else ('met' if d.met else 'not met')}</td></tr>" for d in (r.by or []))
        districts_html = (f"<table><tr><th>district</th><th>value</th><th></th></tr>{district_rows}</table>"
                          if district_rows else "")
        sections.append(
            f"<section id='{r.indicator}'><h2>{html.escape(r.title)}</h2>"
            f"<p class=value>{html.escape(_value_text(r))}</p>"
            f"<p class=def><code>{html.escape(r.indicator)}</code>: numerator {_cell(r.numerator)}, "
            f"denominator {_cell(r.denominator)} ({html.escape(r.measure)})</p>"
            + (f"<img alt='map of {html.escape(r.indicator)}' src='data:image/png;base64,{png}'>" if png else "")
            + districts_html + _gap_table(r) + "</section>")
    skipped_html = ("<h2>Not computed</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>"
                    if skipped else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Coverage indicators: {html.escape(city)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
table {{ border-collapse: collapse; margin: .6em 0; }} td, th {{ border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: left; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }} .met {{ color: #2e7d32; font-weight: 600; }}
.miss {{ color: #c62828; font-weight: 600; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
section {{ margin-top: 2.2em; }} .value {{ font-size: 1.15em; }} .def {{ color: #666; }}
</style></head><body>
<h1>Smart-city coverage indicators{': ' + html.escape(city) if city else ''}</h1>
<table><tr><th>indicator</th><th>value</th><th>target</th><th></th><th>stars</th></tr>{''.join(rows)}</table>
{skipped_html}
{''.join(sections)}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
