"""The weekly export's HTML report: one self-contained file that reads offline.

The charts are inline SVG drawn here (no JavaScript, no CDN, no fonts to fetch), so the file is
small, prints well and is byte-identical when the same week is exported again. Evidently's drift
report, when asked for, is embedded whole in an ``<iframe srcdoc>``, which keeps it self-contained too.

Sections (each an ``<section id=...>``): ``overview``, ``segments``, ``volume``, ``acceptance``,
``drift``, ``toxicity``, ``alerts``, ``monitors`` (precision and recall of the monitors against the
reviewers' labels), ``review`` and, optionally, ``evidently``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from llmsight.store.names import SEGMENT_KEYS

PALETTE = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00")
REVIEW_ROWS_SHOWN = 50
TOXIC_ROWS_SHOWN = 100

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
.sub{color:#666;margin-top:4px}table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}.worse{color:#b00020;font-weight:600}
.better{color:#137333}.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:10px 14px;min-width:140px}.card b{display:block;font-size:22px}.muted{color:#888}
.ex{color:#444;font-style:italic}.provisional{border:2px solid #b00020;border-radius:6px;padding:8px 12px;
color:#b00020;font-weight:600}svg text{font-size:11px;fill:#333}iframe{width:100%;height:900px;border:1px solid #ddd}
"""

# Which direction is bad for each figure (True: higher is worse), for the colour of a change.
_HIGHER_IS_WORSE = {"volume": None, "latency_p50_ms": True, "latency_p95_ms": True, "error_rate": True,
                    "cost_usd": True, "cost_per_call_usd": True, "acceptance_rate": False,
                    "toxicity_rate_output": True, "drift_input_mean": True, "drift_input_windows_drifted": True}
_LABELS = {"volume": "calls", "latency_p50_ms": "p50 ms", "latency_p95_ms": "p95 ms", "error_rate": "errors",
           "cost_usd": "cost $", "cost_per_call_usd": "$ / call", "acceptance_rate": "acceptance",
           "toxicity_rate_output": "toxic outputs", "drift_input_mean": "input drift",
           "drift_input_windows_drifted": "windows drifted"}
_PERCENT = {"error_rate", "acceptance_rate", "toxicity_rate_output", "drift_input_windows_drifted"}


def _fmt(name: str, value: Any) -> str:
    if value is None or value == "":
        return "–"
    if name in _PERCENT:
        return f"{100 * float(value):.1f}%"
    if name == "volume":
        return f"{int(value):,}"
    if name in ("cost_usd", "cost_per_call_usd"):
        return f"{float(value):.4f}" if float(value) < 1 else f"{float(value):,.2f}"
    return f"{float(value):,.1f}" if abs(float(value)) >= 10 else f"{float(value):.3f}"


def _segment_name(row: dict[str, Any]) -> str:
    return " / ".join(str(row.get(k, "")) for k in SEGMENT_KEYS)


def _change(name: str, now: Any, before: Any) -> str:
    if now is None or before is None or now == "" or before == "":
        return ""
    delta = float(now) - float(before)
    if delta == 0:
        return ""
    worse = _HIGHER_IS_WORSE.get(name)
    css = "" if worse is None else ("worse" if (delta > 0) == worse else "better")
    shown = f"{100 * delta:+.1f} pts" if name in _PERCENT else (
        f"{100 * delta / float(before):+.0f}%" if float(before) else "new")
    return f' <span class="{css}">({shown})</span>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _empty(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


# -- charts ------------------------------------------------------------------------------------------

def line_chart(days: list[str], series: dict[str, list[float | None]], title: str, width: int = 1000,
               height: int = 260, y_max: float | None = None) -> str:
    """Lines over the days of the week, one per series, with a y axis from zero. A None is a gap
    (a prompt version that did not exist yet has no acceptance, not an acceptance of zero)."""
    if not series or not days:
        return _empty("No data.")
    left, right, top, bottom = 60, 340, 24, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = y_max or max((v for values in series.values() for v in values if v is not None), default=0) or 1
    step = plot_w / max(len(days) - 1, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="{left}" y="14" font-weight="600">{escape(title)}</text>']
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{peak * i / 4:,.0f}</text>')
    for i, day in enumerate(days):
        parts.append(f'<text x="{left + i * step:.1f}" y="{height - 10}" text-anchor="middle">{escape(day[5:])}</text>')
    for n, (name, values) in enumerate(sorted(series.items())):
        colour = PALETTE[n % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None:
                runs.append([])
                continue
            x, y = left + i * step, top + plot_h - plot_h * v / peak
            runs[-1].append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(run)}"/>')
        parts.append(f'<rect x="{left + plot_w + 12}" y="{top + 16 * n}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{left + plot_w + 26}" y="{top + 16 * n + 9}">{escape(name[:52])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(rows: list[tuple[str, float, float, float]], title: str, width: int = 1000) -> str:
    """Horizontal bars of rates in [0, 1] with their confidence intervals as whiskers."""
    if not rows:
        return _empty("No feedback.")
    left, right, bar_h, gap = 330, 40, 16, 8
    plot_w = width - left - right
    height = 40 + len(rows) * (bar_h + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="14" font-weight="600">{escape(title)}</text>']
    for tick in range(0, 101, 20):
        x = left + plot_w * tick / 100
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="22" y2="{height - 4}" stroke="#eee"/>'
                     f'<text x="{x:.1f}" y="{height}" text-anchor="middle">{tick}%</text>')
    for i, (label, rate, low, high) in enumerate(rows):
        y = 26 + i * (bar_h + gap)
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{escape(label[:52])}</text>'
                     f'<rect x="{left}" y="{y}" width="{plot_w * rate:.1f}" height="{bar_h}" fill="{colour}" '
                     f'opacity="0.75"/><line x1="{left + plot_w * low:.1f}" x2="{left + plot_w * high:.1f}" '
                     f'y1="{y + bar_h / 2}" y2="{y + bar_h / 2}" stroke="#000" stroke-width="1.5"/>'
                     f'<text x="{left + plot_w * high + 4:.1f}" y="{y + 12}">{100 * rate:.1f}%</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(rows: list[tuple[str, float, str]], title: str, width: int = 1000) -> str:
    """Horizontal bars (label, value, colour), scaled to the largest value."""
    if not rows:
        return _empty("No data.")
    left, right, bar_h, gap = 330, 80, 14, 6
    plot_w = width - left - right
    peak = max(v for _, v, _ in rows) or 1
    height = 30 + len(rows) * (bar_h + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><text x="0" y="14" font-weight="600">{escape(title)}</text>']
    for i, (label, value, colour) in enumerate(rows):
        y = 24 + i * (bar_h + gap)
        parts.append(f'<text x="{left - 8}" y="{y + 11}" text-anchor="end">{escape(label[:52])}</text>'
                     f'<rect x="{left}" y="{y}" width="{plot_w * value / peak:.1f}" height="{bar_h}" fill="{colour}"/>'
                     f'<text x="{left + plot_w * value / peak + 4:.1f}" y="{y + 11}">{value:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- sections ----------------------------------------------------------------------------------------

def _overview(summary: Any, sample: list[dict[str, Any]]) -> str:
    t = summary.totals
    cards = [("calls", f"{t.get('calls', 0):,}", f"previous week {t.get('prev_calls', 0):,}"),
             ("acceptance", _fmt("acceptance_rate", t.get("acceptance_rate")), f"{t.get('judged', 0):,} verdicts"),
             ("toxic outputs flagged", str(t.get("toxic_outputs", 0)), "redacted below"),
             ("alerts fired", str(t.get("alerts", 0)), "with time to resolve"),
             ("review sample", str(len(sample)), "rows in review_sample.csv")]
    html = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b><span class="muted">{escape(s)}</span></div>'
                   for k, v, s in cards)
    return f'<section id="overview"><div class="cards">{html}</div></section>'


def _segments(summary: Any) -> str:
    figures = list(_LABELS)
    rows = []
    for seg in summary.segments:
        rows.append([escape(_segment_name(seg))] + [
            _fmt(f, seg.get(f)) + _change(f, seg.get(f), seg.get(f"prev_{f}")) +
            f'<br><span class="muted">{_fmt(f, seg.get(f"prev_{f}"))}</span>' for f in figures])
    table = _table(["segment (service / name / model / prompt version)", *(_LABELS[f] for f in figures)], rows,
                   set(range(1, len(figures) + 1))) if rows else _empty("No calls this week or last.")
    return ('<section id="segments"><h2>Segments: this week against last week</h2>'
            '<p class="sub">Each cell: this week, the change, and last week below it in grey.</p>'
            f"{table}</section>")


def _volume(summary: Any) -> str:
    days = sorted({d["day"] for d in summary.daily})
    volume: dict[str, list[float | None]] = {}
    acceptance: dict[str, list[float | None]] = {}
    for d in summary.daily:
        name = _segment_name(d)
        volume.setdefault(name, [0.0] * len(days))[days.index(d["day"])] = d["volume"]
        if d["judged"]:
            acceptance.setdefault(name, [None] * len(days))[days.index(d["day"])] = 100.0 * d["accepted"] / d["judged"]
    return ('<section id="volume"><h2>Daily volume and acceptance</h2>'
            f'{line_chart(days, volume, "Calls per day")}{line_chart(days, acceptance, "Acceptance per day (%)", y_max=100)}'
            "</section>")


def _acceptance(summary: Any) -> str:
    bars = [(f"{_segment_name(r)} ({r['week']})", r["acceptance_rate"], r["ci_low"], r["ci_high"])
            for r in summary.acceptance]
    rows = [[escape(_segment_name(r)), escape(r["week"]), f"{r['judged']:,}", f"{r['accepted']:,}",
             _fmt("acceptance_rate", r["acceptance_rate"]),
             f"{_fmt('acceptance_rate', r['ci_low'])} – {_fmt('acceptance_rate', r['ci_high'])}"]
            for r in summary.acceptance]
    table = _table(["segment", "week", "verdicts", "accepted", "rate", "95% Wilson interval"], rows, {2, 3, 4}) \
        if rows else ""
    return ('<section id="acceptance"><h2>Acceptance by prompt version</h2>'
            f'{interval_chart(bars, "Acceptance rate with 95% Wilson intervals")}{table}</section>')


def _topic_rows(topics: list[dict[str, Any]], weekly: bool) -> str:
    def examples(t: dict[str, Any]) -> str:
        return "<br>".join(f'<span class="ex">“{escape(x)}”</span>' for x in t["examples"])

    if weekly:
        rows = [[escape(t["direction"]), escape(t["label"]), _fmt("error_rate", t["share_prev"]),
                 _fmt("error_rate", t["share_week"]), "–" if t["max_z"] is None else f"{t['max_z']:.1f}", examples(t)]
                for t in topics]
        return _table(["direction", "topic", "share last week", "share this week", "|z|", "examples"], rows, {2, 3, 4})
    rows = [[escape(t["metric"]), escape(t["direction"]), escape(t["label"]), str(t["windows"]),
             f"{t['mean_delta']:.3f}", f"{t['max_delta']:.3f}", "–" if t["max_z"] is None else f"{t['max_z']:.1f}",
             examples(t)] for t in topics]
    return _table(["metric", "direction", "topic", "windows", "mean share change", "max share change", "max |z|",
                   "examples"], rows, {3, 4, 5, 6})


def _drift(summary: Any) -> str:
    weekly = [t for t in summary.topics if t["scope"] == "week"]
    windows = [t for t in summary.topics if t["scope"] == "windows"]
    if not weekly and not windows:
        return ('<section id="drift"><h2>Drift: topics that changed most</h2>'
                f'{_empty("No drift explanations were recorded this week.")}</section>')
    chosen = weekly or [t for t in windows if t["metric"].endswith("input")]
    bars = [(f"{'+' if t['direction'] == 'grown' else '−'} {t['label']}", float(t["max_delta"]),
             "#dc3912" if t["direction"] == "grown" else "#3366cc") for t in chosen][:12]
    parts = ['<section id="drift"><h2>Drift: topics that changed most</h2>',
             bar_chart(bars, "Largest change in share of input traffic")]
    if weekly:
        parts.append('<h3>This week against last week</h3><p class="sub">Clusters of meaning over a sample of '
                     'both weeks\' inputs, all segments together: the share of each week that falls in the '
                     'cluster, and the texts nearest its centre.</p>' + _topic_rows(weekly, True))
    if windows:
        parts.append('<h3>Within the week\'s drift windows</h3><p class="sub">What the analyzers found each '
                     'time a window was compared with its reference, gathered by topic.</p>'
                     + _topic_rows(windows, False))
    parts.append("</section>")
    return "".join(parts)


def _toxicity(summary: Any) -> str:
    shown = sorted(summary.toxic, key=lambda t: (-t["toxicity_score"], t["ts"], t["trace_id"]))[:TOXIC_ROWS_SHOWN]
    rows = [[escape(t["ts"]), escape(_segment_name(t)), f"{t['toxicity_score']:.2f}", escape(t["input"][:300]),
             escape(t["output"][:500])] for t in shown]
    body = _table(["time", "segment", "score", "input (redacted)", "output (redacted)"], rows, {2}) if rows \
        else _empty("No output was flagged toxic this week.")
    note = (f'<p class="sub">{len(summary.toxic)} outputs flagged; the {len(shown)} with the highest scores are '
            'shown, all of them are in <code>toxic_outputs.csv</code>.</p>') if len(shown) < len(summary.toxic) else ""
    return f'<section id="toxicity"><h2>Flagged toxic outputs</h2>{note}{body}</section>'


def _alerts(summary: Any) -> str:
    rows = [[escape(a["rule"]), escape(a["metric"]), escape(a["severity"]), escape(_segment_name(a)),
             escape(a["fired_at"]), escape(a["resolved_at"] or "open at the end of the week"),
             "–" if a["minutes_to_resolve"] is None else f"{a['minutes_to_resolve']:.1f}", escape(a["acked_by"])]
            for a in summary.alerts]
    body = _table(["rule", "metric", "severity", "segment", "fired", "resolved", "minutes to resolve", "acked by"],
                  rows, {6}) if rows else _empty("No alert fired this week.")
    return f'<section id="alerts"><h2>Alerts</h2>{body}</section>'


def _monitors(summary: Any) -> str:
    rows = [[escape(m["week"]), escape(m["monitor"]), str(m["reviewed"]), str(m["flagged"]), str(m["human_positive"]),
             str(m["true_positive"]), _fmt_share(m["precision"]), _fmt_share(m["recall"])]
            for m in getattr(summary, "monitors", [])]
    head = '<section id="monitors"><h2>Monitors against reviewers</h2>'
    if not rows:
        return head + _empty("No call of this week was labelled by a reviewer.") + "</section>"
    note = ('<p class="sub">Of the calls reviewers labelled: precision is the share of the calls a monitor flagged '
            'that reviewers found bad (toxic, for the toxicity flag); recall the share of the calls reviewers found '
            'bad that it flagged. Small counts: read the figures with them.</p>')
    body = _table(["week", "monitor", "reviewed", "flagged", "bad to reviewers", "both", "precision", "recall"],
                  rows, {2, 3, 4, 5, 6, 7})
    advice = getattr(summary, "threshold_suggestion", "")
    advice_html = f'<p class="worse" id="threshold-suggestion">{escape(advice)}</p>' if advice else ""
    return head + note + body + advice_html + "</section>"


def _fmt_share(value: Any) -> str:
    return "–" if value is None else f"{float(value):.0%}"


def _review(sample: list[dict[str, Any]]) -> str:
    shown = sample[:REVIEW_ROWS_SHOWN]
    rows = [[escape(r["flag"]), escape(r["ts"]), escape(r["prompt_version"]), escape(str(r["input"])[:200]),
             escape(str(r["output"])[:300]), escape(str(r["accepted"]))] for r in shown]
    body = _table(["flag", "time", "version", "input", "output", "accepted"], rows) if rows \
        else _empty("No calls this week.")
    return ('<section id="review"><h2>Review sample</h2>'
            f'<p class="sub">{len(sample)} calls in <code>review_sample.csv</code> (every flagged call plus a '
            f'stratified random sample); fill in <code>reviewer_verdict</code>, <code>reviewer_tags</code>, '
            f'<code>reviewer_edited_output</code> and <code>reviewer_notes</code>, then run '
            f'<code>llmsight review import</code> on it. The first {len(shown)} are shown here.</p>{body}</section>')


def _feedback_notice(text: str, provisional: bool) -> str:
    # Above the overview, where nobody reading the figures can miss a provisional export.
    css = "provisional" if provisional else "sub"
    return f'<p class="{css}" id="feedback-cutoff">{escape(text)}</p>'


def render(summary: Any, sample: list[dict[str, Any]], evidently_html: str | None = None,
           feedback_notice: str | None = None, provisional: bool = False) -> str:
    """The whole report as one HTML string; ``feedback_notice`` says until when feedback was counted."""
    week = summary.week
    sections = [_feedback_notice(feedback_notice, provisional)] if feedback_notice else []
    sections += [_overview(summary, sample), _segments(summary), _volume(summary), _acceptance(summary),
                _drift(summary), _toxicity(summary), _alerts(summary), _monitors(summary),
                 _review(sample)]
    if evidently_html:
        sections.append('<section id="evidently"><h2>Evidently: text drift, this week against last week</h2>'
                        f'<iframe title="Evidently drift report" srcdoc="{escape(evidently_html, quote=True)}">'
                        "</iframe></section>")
    start, end = week.start.strftime("%Y-%m-%d"), week.end.strftime("%Y-%m-%d")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>llmsight quality review {escape(week.label)}</title><style>{_CSS}</style></head><body>"
            f"<h1>Quality review {escape(week.label)}</h1>"
            f'<p class="sub">{start} to {end} (UTC, end exclusive), compared with {escape(week.previous().label)}.</p>'
            + "".join(sections) + "</body></html>\n")
