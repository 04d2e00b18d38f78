"""Charts as pictures, drawn on the server: small SVG bar charts and a meter.

No inline styles (the pages' CSP forbids them): geometry goes in SVG
attributes, colours in classes of ``static/webadmin.css`` (``.chart .s0`` …).
Every label and title is escaped here, so callers may pass any text (a
mailbox address, a source name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from django.utils import formats
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Formatter = Callable[[float], str]


def _number(value: float, decimals: int) -> str:
    """The figure as the active language writes it (1’234 or 1 234,5), grouped always."""
    return formats.number_format(round(value, decimals), decimals, use_l10n=True, force_grouping=True)


def count(value: float) -> str:
    return _number(int(value), 0)


def size(value: float) -> str:
    """Bytes as a short binary size: 1.5 MiB."""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{_number(amount, 0)} {unit}" if unit == "B" else f"{_number(amount, 1)} {unit}"
        amount /= 1024
    return f"{_number(amount, 1)} PiB"  # pragma: no cover - the loop returns


def seconds(value: float) -> str:
    value = float(value)
    if value < 120:
        return f"{_number(value, 0)} s"
    if value < 7200:
        return f"{_number(value / 60, 0)} min"
    return f"{_number(value / 3600, 1)} h"


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    css_class: str = ""  # default: s0, s1, … by position

    def cls(self, position: int) -> str:
        return self.css_class or f"s{position}"


def _attrs(**values: object) -> str:
    return " ".join(f'{k.replace("_", "-")}="{escape(str(v))}"' for k, v in values.items())


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    fmt: Formatter = count,
    width: int = 500,
    height: int = 200,
    chart_id: str = "",
) -> SafeString:
    """Stacked bars, one per label; each series a colour (``s0``, ``s1``, …).
    Every bar has a tooltip with its figures; the axis shows the first, middle
    and last labels and the largest total."""
    left, right, top, bottom = 64, 8, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    step = plot_w / max(1, len(labels))
    bar_w = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" {_attrs(id=chart_id) if chart_id else ""} role="img" '
        f"{_attrs(viewBox=f'0 0 {width} {height}', width=width, height=height, aria_label=title)} "
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" {_attrs(x=left, y=16)}>{escape(title)}</text>',
        f'<line class="axis" {_attrs(x1=left, y1=top + plot_h, x2=left + plot_w, y2=top + plot_h)}/>',
        f'<line class="axis" {_attrs(x1=left, y1=top, x2=left, y2=top + plot_h)}/>',
        f'<text class="tick" text-anchor="end" {_attrs(x=left - 4, y=top + 10)}>{escape(fmt(peak))}</text>',
        f'<text class="tick" text-anchor="end" {_attrs(x=left - 4, y=top + plot_h)}>0</text>',
    ]
    for i, label in enumerate(labels):
        x = left + i * step + (step - bar_w) / 2
        y = float(top + plot_h)
        tip = ", ".join(f"{s.name}: {fmt(s.values[i])}" for s in series) if len(series) > 1 else fmt(totals[i])
        parts.append(f'<g class="bar" data-label="{escape(label)}"><title>{escape(label)}: {escape(tip)}</title>')
        for n, s in enumerate(series):
            h = plot_h * s.values[i] / peak
            if h <= 0:
                continue
            y -= h
            box = _attrs(x=f"{x:.1f}", y=f"{y:.1f}", width=f"{bar_w:.1f}", height=f"{h:.1f}")
            parts.append(f'<rect class="{s.cls(n)}" {box}/>')
        parts.append("</g>")
    shown = sorted({0, len(labels) // 2, len(labels) - 1}) if labels else []
    for i in shown:
        x = left + i * step + step / 2
        # The outer labels grow inwards, so the picture does not cut them off.
        anchor = "middle" if len(labels) < 3 or 0 < i < len(labels) - 1 else ("start" if i == 0 else "end")
        if anchor != "middle":
            x = left + i * step + (0 if i == 0 else step)
        tick = _attrs(x=f"{x:.1f}", y=top + plot_h + 14, text_anchor=anchor)
        parts.append(f'<text class="tick" {tick}>{escape(labels[i])}</text>')
    if len(series) > 1:
        legend_x = float(left)
        for n, s in enumerate(series):
            parts.append(f'<rect class="{s.cls(n)}" {_attrs(x=legend_x, y=height - 12, width=10, height=10)}/>')
            parts.append(f'<text class="legend" {_attrs(x=legend_x + 14, y=height - 3)}>{escape(s.name)}</text>')
            legend_x += 24 + 8 * len(s.name)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def hbar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    fmt: Formatter = count,
    width: int = 500,
    chart_id: str = "",
    label_chars: int = 30,
) -> SafeString:
    """Stacked horizontal bars, one row per label (long labels: mailboxes);
    a label longer than ``label_chars`` is shortened, its tooltip has it whole."""
    left, right, top, row_h = 210, 60, 26, 22
    height = top + row_h * len(labels) + (22 if len(series) > 1 else 6)
    plot_w = width - left - right
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    box = _attrs(viewBox=f"0 0 {width} {height}", width=width, height=height, aria_label=title)
    parts = [
        f'<svg class="chart" {_attrs(id=chart_id) if chart_id else ""} role="img" {box} '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" {_attrs(x=4, y=16)}>{escape(title)}</text>',
    ]
    for i, label in enumerate(labels):
        y = top + i * row_h
        short = label if len(label) <= label_chars else label[: label_chars - 1] + "…"
        tip = ", ".join(f"{s.name}: {fmt(s.values[i])}" for s in series)
        parts.append(f'<g class="bar" data-label="{escape(label)}"><title>{escape(label)}: {escape(tip)}</title>')
        parts.append(f'<text class="tick" {_attrs(x=left - 6, y=y + 15, text_anchor="end")}>{escape(short)}</text>')
        x = float(left)
        for n, s in enumerate(series):
            w = plot_w * s.values[i] / peak
            if w <= 0:
                continue
            rect = _attrs(x=f"{x:.1f}", y=y + 3, width=f"{w:.1f}", height=row_h - 6)
            parts.append(f'<rect class="{s.cls(n)}" {rect}/>')
            x += w
        parts.append(f'<text class="tick" {_attrs(x=f"{x + 4:.1f}", y=y + 15)}>{escape(fmt(totals[i]))}</text>')
        parts.append("</g>")
    if len(series) > 1:
        legend_x = float(left)
        for n, s in enumerate(series):
            parts.append(f'<rect class="{s.cls(n)}" {_attrs(x=legend_x, y=height - 12, width=10, height=10)}/>')
            parts.append(f'<text class="legend" {_attrs(x=legend_x + 14, y=height - 3)}>{escape(s.name)}</text>')
            legend_x += 24 + 8 * len(s.name)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def meter(percent: float, *, title: str, alarm: bool = False, width: int = 320, height: int = 28) -> SafeString:
    """A horizontal bar filled to ``percent`` (0–100), with the figure in it."""
    share = max(0.0, min(100.0, percent))
    filled = width * share / 100
    state = "alarm" if alarm else "ok"
    box = _attrs(viewBox=f"0 0 {width} {height}", width=width, height=height, aria_label=title)
    return mark_safe(  # noqa: S308 - the texts are escaped
        f'<svg class="meter {state}" role="img" {box} '
        'xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<rect class="meter-track" {_attrs(x=0, y=0, width=width, height=height, rx=4)}/>'
        f'<rect class="meter-fill" {_attrs(x=0, y=0, width=f"{filled:.1f}", height=height, rx=4)}/>'
        f'<text class="meter-text" {_attrs(x=width / 2, y=height / 2 + 5)} text-anchor="middle">'
        f"{_number(share, 1)} %</text>"
        "</svg>"
    )
