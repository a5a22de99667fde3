"""Altair charts shared by the pages (Altair ships with Streamlit)."""

from __future__ import annotations

import altair as alt
import pandas as pd


def lines(frame: pd.DataFrame, x: str, y: str, color: str, *, title: str = "", y_format: str = ".3f",
          threshold: float | None = None, tooltip: list[str] | None = None) -> alt.LayerChart | alt.Chart:
    """A line per ``color`` value over time, with an optional dashed threshold rule."""
    base = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X(f"{x}:T", title=None),
        y=alt.Y(f"{y}:Q", title=title, axis=alt.Axis(format=y_format)),
        color=alt.Color(f"{color}:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=tooltip or [x, color, alt.Tooltip(y, format=y_format)],
    )
    if threshold is None:
        return base
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(strokeDash=[6, 4], color="red").encode(
        y="threshold:Q")
    return base + rule


def rate_with_band(frame: pd.DataFrame) -> alt.LayerChart:
    """Acceptance per series over time, with its confidence interval as a band."""
    band = alt.Chart(frame).mark_area(opacity=0.2).encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("low:Q", title="acceptance", axis=alt.Axis(format="%")),
        y2="high:Q", color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")))
    line = alt.Chart(frame).mark_line(point=True).encode(
        x="bucket:T", y="rate:Q", color="series:N",
        tooltip=["bucket:T", "series:N", "n:Q", alt.Tooltip("rate:Q", format=".1%"),
                 alt.Tooltip("low:Q", format=".1%"), alt.Tooltip("high:Q", format=".1%")])
    return band + line


def sample_map(points: pd.DataFrame) -> alt.Chart:
    """Reference against current samples on two principal components; the text shows on hover."""
    return alt.Chart(points).mark_circle(size=60, opacity=0.7).encode(
        x=alt.X("pc1:Q", title="PC 1"), y=alt.Y("pc2:Q", title="PC 2"),
        color=alt.Color("period:N", title=None, scale=alt.Scale(domain=["reference", "current"],
                                                                range=["#4c78a8", "#e45756"])),
        tooltip=["period:N", "text:N", "segment:N"],
    ).interactive()
