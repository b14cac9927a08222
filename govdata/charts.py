"""Inline SVG charts of the findings page: no JavaScript, no network, labels escaped."""
from __future__ import annotations

import html

import pandas as pd


def _text_width(text: str, size: int) -> float:
    """Rough rendered width: CJK characters are one em, others about 0.6 em."""
    return sum(size if ord(ch) > 0x2E80 else size * 0.6 for ch in str(text))


def share_bars(rows: list[tuple[str, float, str]], width: int = 640, color: str = "#2f6fbd") -> str:
    """Horizontal bars on a 0–100% scale: (label, share, value label)."""
    rows = [r for r in rows if r[1] is not None and not pd.isna(r[1])]
    if not rows:
        return ""
    size, bar_h, gap = 13, 18, 7
    label_w = min(260, max(_text_width(r[0], size) for r in rows) + 12)
    plot_w = width - label_w - max(_text_width(r[2], size) for r in rows) - 12
    parts = []
    for i, (label, share, shown) in enumerate(rows):
        y = i * (bar_h + gap)
        w = max(0.0, min(1.0, float(share))) * plot_w
        parts.append(
            f"<text x='{label_w - 8:.0f}' y='{y + bar_h - 5}' font-size='{size}' text-anchor='end'>"
            f"{html.escape(label)}</text>"
            f"<rect x='{label_w:.0f}' y='{y}' width='{plot_w:.1f}' height='{bar_h}' fill='#eef2f7'/>"
            f"<rect x='{label_w:.0f}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='{color}'/>"
            f"<text x='{label_w + plot_w + 6:.0f}' y='{y + bar_h - 5}' font-size='{size}'>{html.escape(shown)}</text>")
    height = len(rows) * (bar_h + gap)
    return (f"<svg class='chart' role='img' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg>")


def stacked_bars(rows: list[tuple[str, list[float]]], colors: list[str], width: int = 640) -> str:
    """Horizontal 100% stacked bars: (label, [part shares…]) — e.g. good / neutral / bad."""
    rows = [r for r in rows if sum(v for v in r[1] if v == v) > 0]
    if not rows:
        return ""
    size, bar_h, gap = 13, 18, 7
    label_w = min(260, max(_text_width(r[0], size) for r in rows) + 12)
    plot_w = width - label_w - 10
    parts = []
    for i, (label, shares) in enumerate(rows):
        y = i * (bar_h + gap)
        parts.append(f"<text x='{label_w - 8:.0f}' y='{y + bar_h - 5}' font-size='{size}' text-anchor='end'>"
                     f"{html.escape(label)}</text>")
        x = label_w
        for share, color in zip(shares, colors):
            w = max(0.0, float(share)) * plot_w
            if w > 0:
                parts.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='{color}'/>")
                if w > 38:
                    parts.append(f"<text x='{x + w / 2:.1f}' y='{y + bar_h - 5}' font-size='11' fill='#fff' "
                                 f"text-anchor='middle'>{float(share) * 100:.1f}%</text>")
            x += w
    height = len(rows) * (bar_h + gap)
    return (f"<svg class='chart' role='img' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg>")


def sparkline(values: list[float], width: int = 120, height: int = 30, color: str = "#2f6fbd") -> str:
    """A small trend line over the last runs (oldest left); a single run shows one dot."""
    values = [float(v) for v in values if v is not None and not pd.isna(v)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = (width - 8) / max(1, len(values) - 1)
    pts = [(4 + i * step, height - 4 - (v - lo) / span * (height - 8)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    last = pts[-1]
    poly = f"<polyline points='{line}' fill='none' stroke='{color}' stroke-width='2'/>" if len(pts) > 1 else ""
    return (f"<svg class='spark' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"xmlns='http://www.w3.org/2000/svg'>{poly}<circle cx='{last[0]:.1f}' cy='{last[1]:.1f}' r='3' "
            f"fill='{color}'/></svg>")
