"""Review: a reviewer works through a week's sampled calls one at a time, and sees how the monitors score.

The queue is :func:`llmsight.review.labels.review_queue`: the week's review sample as the weekly
export draws it (flagged toxic or rejected by the user, plus a stratified random sample) and every
call an evaluator flagged. For each call the reviewer accepts or rejects, with tags, an edited answer
and a comment; the label is stored under the login's name (:func:`llmsight.dashboard.auth.current_user`,
never typed in) in ``review_labels``, and the next call not yet labelled comes up.

Keyboard: **A** accepts, **X** rejects, **J** / **K** go to the next / previous call (when the cursor
is not in a text box). The progress bar counts the calls of the queue this reviewer has labelled.

Below the queue, the monitors' precision and recall against every reviewer's labels for the week
(:mod:`llmsight.review.precision`), and a suggested toxicity threshold when they drift.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pandas as pd
import streamlit as st

from llmsight.dashboard import auth, data
from llmsight.dashboard.text import plain
from llmsight.review.labels import TAGS, Label, latest_labels, review_queue, save_labels
from llmsight.review.weeks import IsoWeek, last_complete_week, parse_week
from llmsight.store.queries import Filters

WEEKS_OFFERED = 8


def week_choices(now: dt.datetime | None = None) -> list[IsoWeek]:
    """This week and the ones before it, newest first."""
    week = IsoWeek.containing(now or dt.datetime.now(dt.timezone.utc))
    out = [week]
    for _ in range(WEEKS_OFFERED - 1):
        out.append(out[-1].previous())
    return out


def _chosen_week() -> IsoWeek:
    choices = week_choices()
    labels = [w.label for w in choices]
    wanted = st.query_params.get("week") or last_complete_week().label
    try:
        wanted = parse_week(wanted).label
    except Exception:
        st.warning(f"Week {plain(wanted)} is not an ISO week (YYYY-Www): showing the last complete week.")
        wanted = last_complete_week().label
    if wanted not in labels:
        labels.append(wanted)
    picked = st.selectbox("Week", labels, index=labels.index(wanted), key="review_week",
                          help="The ISO week whose calls to review (UTC, Monday to Monday).")
    st.query_params["week"] = picked
    return parse_week(picked)


def _queue(week: IsoWeek) -> list[dict[str, Any]]:
    """The week's queue, drawn once per session (a reload button draws it again)."""
    key = f"review_queue:{data.store_url()}:{week.label}"
    if key not in st.session_state:
        st.session_state[key] = review_queue(data.client(), week)
    return st.session_state[key]  # type: ignore[no-any-return]


def _mine(traces: list[str], who: str) -> dict[str, Label]:
    return {label.trace_id: label for label in latest_labels(data.client(), traces, reviewer=who)} if traces else {}


def _save(week: str, row: dict[str, Any], who: str, verdict: str, order: list[str]) -> None:
    """Button callback: store the label from the widgets' values, then move to the next unlabelled call."""
    trace = row["trace_id"]
    edited = str(st.session_state.get(f"review_edit_{trace}", "") or "")
    if edited.strip() == str(row["output"]).strip():
        edited = ""  # the answer unchanged is no edit
    label = Label(trace, who, verdict, tuple(st.session_state.get(f"review_tags_{trace}", []) or ()), edited,
                  str(st.session_state.get(f"review_comment_{trace}", "") or ""), str(row.get("event_id") or ""),
                  "dashboard")
    try:
        save_labels(data.client(), [label])
    except Exception as exc:  # the store refused: say so, keep the reviewer's input in the widgets
        st.session_state["review_error"] = f"The label was not saved: {exc}"
        return
    done = set(st.session_state.get(f"review_done:{week}", set())) | {trace}
    st.session_state[f"review_done:{week}"] = done
    st.session_state["review_saved"] = f"{'Accepted' if verdict == 'accept' else 'Rejected'} {trace}."
    position = order.index(trace)
    following = [i for i in range(position + 1, len(order))] + list(range(position))
    st.session_state[f"review_pos:{week}"] = next((i for i in following if order[i] not in done), position)


def _move(week: str, step: int, total: int) -> None:
    key = f"review_pos:{week}"
    st.session_state[key] = (int(st.session_state.get(key, 0)) + step) % total


def _call(row: dict[str, Any], existing: Label | None) -> None:
    segment = "/".join(str(row[k]) for k in ("service", "name", "model", "prompt_version"))
    st.markdown(f"**{plain(row['flag'])}** · {plain(segment)} · {plain(row['ts'])} · trace {plain(row['trace_id'])}")
    left, right = st.columns(2)
    with left:
        st.caption("Prompt (redacted)")
        st.text(str(row["input"]) or "(empty)")
    with right:
        st.caption("Answer (redacted)")
        st.text(str(row["output"]) or "(empty)")
        if row.get("error"):
            st.error(f"Error: {plain(row['error'])}")
    facts = []
    if row.get("accepted") != "":
        facts.append(f"user verdict: {'accepted' if row['accepted'] == 1 else 'rejected'}")
    if row.get("comment"):
        facts.append(f"user comment: {plain(row['comment'])}")
    if row.get("toxicity_score") != "":
        facts.append(f"toxicity score {row['toxicity_score']}")
    if existing is not None:
        facts.append(f"your label: {existing.verdict}" + (f" ({', '.join(existing.tags)})" if existing.tags else ""))
    if facts:
        st.caption(" · ".join(facts))


def queue_section(week: IsoWeek) -> None:
    who = auth.current_user()  # from the login, never typed in
    queue = _queue(week)
    if not queue:
        st.info(f"Nothing to review for {week.label}: no calls that week.")
        return
    order = [row["trace_id"] for row in queue]
    mine = _mine(order, who)
    done_key, pos_key = f"review_done:{week.label}", f"review_pos:{week.label}"
    done = {t for t in order if t in mine} | set(st.session_state.get(done_key, set()))
    st.session_state[done_key] = done
    if pos_key not in st.session_state:
        st.session_state[pos_key] = next((i for i, t in enumerate(order) if t not in done), 0)
    position = int(st.session_state[pos_key]) % len(order)
    labelled = sum(t in done for t in order)
    st.progress(labelled / len(order), text=f"{labelled} of {len(order)} calls labelled by {plain(who)}")
    for key, show in (("review_saved", st.success), ("review_error", st.error)):
        if key in st.session_state:
            show(plain(st.session_state.pop(key)))
    row = queue[position]
    trace = row["trace_id"]
    existing = mine.get(trace)
    st.subheader(f"Call {position + 1} of {len(order)}")
    _call(row, existing)
    st.multiselect("Tags", TAGS, default=list(existing.tags) if existing else [], key=f"review_tags_{trace}")
    st.text_area("Edited answer (change the answer to what it should have been; leave it as is for no edit)",
                 value=(existing.edited_output if existing and existing.edited_output else str(row["output"])),
                 key=f"review_edit_{trace}", height=120)
    st.text_input("Comment", value=existing.comment if existing else "", key=f"review_comment_{trace}")
    accept, reject, previous, following = st.columns(4)
    accept.button("Accept", key="review_accept", type="primary", shortcut="A", width="stretch",
                  on_click=_save, args=(week.label, row, who, "accept", order))
    reject.button("Reject", key="review_reject", shortcut="X", width="stretch",
                  on_click=_save, args=(week.label, row, who, "reject", order))
    previous.button("Previous", key="review_prev", shortcut="K", width="stretch",
                    on_click=_move, args=(week.label, -1, len(order)))
    following.button("Next", key="review_next", shortcut="J", width="stretch",
                     on_click=_move, args=(week.label, 1, len(order)))
    st.caption(f"Labelling as {plain(who)}. Keys (outside the text boxes): A accept, X reject, J next, K previous.")


class MemoScorer:
    """A toxicity scorer that remembers each text's probability: the monitors section runs again after every
    label, and only the outputs it has not seen are scored (at most ``limit`` texts kept)."""

    def __init__(self, scorer: Any, limit: int = 50_000) -> None:
        self.scorer, self.threshold, self.limit = scorer, float(scorer.threshold), limit
        self.known: dict[str, float] = {}
        self.scored = 0  # texts sent to the model
        self.lock = threading.Lock()  # one scorer for every session of the server

    def score(self, texts: list[str]) -> list[float]:
        with self.lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self.known]
            if missing:
                if len(self.known) + len(missing) > self.limit:
                    self.known.clear()
                self.known.update(zip(missing, (float(p) for p in self.scorer.score(missing)), strict=True))
                self.scored += len(missing)
            return [self.known[t] for t in texts]


@st.cache_resource(show_spinner=False)
def _scorer() -> MemoScorer:
    from llmsight.analyzers.toxicity import ToxicityScorer

    return MemoScorer(ToxicityScorer())


def monitors_section(week: IsoWeek) -> None:
    from llmsight.review.precision import MONITOR_COLUMNS, monitor_report

    st.subheader("Monitors against reviewers")
    report = monitor_report(data.client(), week, scorer=_scorer())
    if not report.rows:
        st.caption(f"No call of {week.label} has a reviewer's label yet.")
        return
    st.dataframe(pd.DataFrame(report.rows, columns=MONITOR_COLUMNS), hide_index=True, width="stretch",
                 key="monitor_precision", column_config={
                     "precision": st.column_config.NumberColumn("precision", format="percent"),
                     "recall": st.column_config.NumberColumn("recall", format="percent"),
                     "human_positive": st.column_config.NumberColumn("bad to reviewers"),
                     "true_positive": st.column_config.NumberColumn("both")})
    st.caption(f"From {report.reviewed} reviewed calls of {week.label} (and the week before). Precision: of the "
               "calls a monitor flagged, the share reviewers found bad (toxic, for the toxicity flag); recall: of "
               "the calls reviewers found bad, the share it flagged. Small counts: read the figures with them.")
    if report.suggestion:
        st.warning(plain(report.suggestion.text()))


def render(f: Filters) -> None:
    st.title("Review")
    week = _chosen_week()
    if st.button("Reload the queue", key="review_reload"):
        st.session_state.pop(f"review_queue:{data.store_url()}:{week.label}", None)
    queue_section(week)
    st.divider()
    monitors_section(week)
