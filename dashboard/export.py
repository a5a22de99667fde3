"""Export: run the weekly quality-review export for a week and download its files.

The export is :func:`llmsight.review.export.export_week`, the same code as ``llmsight export``
and the weekly job; it writes to ``LLMSIGHT_EXPORT_DIR/<week>/``.

Downloads stream from disk (:mod:`llmsight.dashboard.downloads`): each file is offered as a link that
lasts ten minutes, and the zip of them all is built when asked for, member by member from disk into an
unnamed temporary file; no download is ever held in memory (``st.download_button`` holds its whole file
there). A file or a zip larger than ``LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES`` is refused: the page says so
and where the files are on the server. The week offered is the last
complete one; exported before its feedback grace ends (Tuesday 00:00 UTC) it is provisional, and the
page says so, as the export's own files do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from llmsight import config
from llmsight.dashboard import data, downloads, settings
from llmsight.review import settings as review_settings
from llmsight.store.queries import Filters

if TYPE_CHECKING:
    from llmsight.review.export import ExportResult

FORMATS = ("parquet", "csv", "html")


def run_export(week: str, formats: list[str]) -> ExportResult:
    """Export ``week`` with a progress bar."""
    from llmsight.review.export import export_week
    from llmsight.review.weeks import parse_week

    bar = st.progress(0.0, text=f"Exporting {week}…")

    def progress(step: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{step}: {done} of {total}")

    out = config.resolve(review_settings.EXPORT_DIR, strict=True)
    result = export_week(data.client(), parse_week(week), out, formats=formats, progress=progress)
    bar.empty()
    return result


def max_download_bytes() -> int:
    return int(config.resolve(settings.DASHBOARD_DOWNLOAD_MAX_BYTES, strict=True))


def render(f: Filters) -> None:
    del f  # the export covers a whole ISO week and every segment
    from llmsight.review.weeks import FEEDBACK_GRACE, last_complete_week

    st.title("Export")
    st.caption("The weekly quality review: per-segment figures against the week before, drift topics, flagged "
               "outputs, acceptance by prompt version, alerts and a review sample to label. Feedback is counted "
               f"until {FEEDBACK_GRACE.days} day after the week (Tuesday 00:00 UTC); an export before then is "
               "provisional.")
    with st.form("export"):
        week = st.text_input("ISO week", value=last_complete_week().label, key="export_week")
        formats = st.multiselect("Formats", list(FORMATS), default=list(FORMATS), key="export_formats")
        submitted = st.form_submit_button("Run export", type="primary")
    if submitted:
        try:
            result = run_export(week.strip(), formats)
        except Exception as exc:  # a bad week or a store error goes to the person who asked, not a traceback
            st.error(f"The export failed: {exc}")
            return
        st.session_state.pop("export_links", None)
        st.session_state.pop("export_zip_url", None)
        st.session_state["export_done"] = {"week": result.week.label, "rows": dict(result.rows),
                                           "files": [str(p) for p in sorted(result.files.values())],
                                           "feedback": result.feedback, "provisional": result.provisional}
    done = st.session_state.get("export_done")
    if not done:
        return
    files = [Path(p) for p in done["files"] if Path(p).exists()]
    st.success(f"Export of {done['week']}: {len(files)} files in {files[0].parent if files else '-'}.")
    if done.get("provisional"):
        st.warning(done["feedback"])
    elif done.get("feedback"):
        st.caption(done["feedback"])
    st.dataframe([{"file": p.name, "bytes": p.stat().st_size} for p in files], hide_index=True, width="stretch")
    st.caption("Rows: " + ", ".join(f"{k} {v:,}" for k, v in done["rows"].items()))
    offer_downloads(files, done["week"])


def _link(path: Path, cap: int) -> str:
    """A fresh link to ``path`` for this session (offered again when it is near its end)."""
    links = st.session_state.setdefault("export_links", {})
    url, at = links.get(str(path), ("", 0.0))
    if not url or time.monotonic() - at > downloads.OFFER_TTL_S - 60:
        url = downloads.url_path(downloads.offer_file(path, cap))
        links[str(path)] = (url, time.monotonic())
    return str(url)


def offer_downloads(files: list[Path], week: str) -> None:
    """Links to each file and, on request, to a zip of them all; nothing above the cap."""
    cap = max_download_bytes()
    sizes = {path: path.stat().st_size for path in files}
    where = files[0].parent if files else "-"
    if sum(sizes.values()) <= cap:
        if st.button("Prepare a zip of all the files", key="export_zip"):
            try:
                token = downloads.offer_zip(files, f"llmsight-{week}.zip", cap)
            except downloads.TooLarge as exc:
                st.session_state.pop("export_zip_url", None)
                st.info(f"No zip: {exc} (LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES); the files are in {where} on the "
                        "server.")
            else:
                st.session_state["export_zip_url"] = (downloads.url_path(token), week, time.monotonic())
        zip_url = st.session_state.get("export_zip_url")
        if zip_url and zip_url[1] == week and time.monotonic() - zip_url[2] < downloads.OFFER_TTL_S:
            st.link_button("Download all (zip)", zip_url[0], type="primary")
    else:
        st.info(f"The export is {sum(sizes.values()):,} bytes, more than the {cap:,} bytes offered for download "
                f"(LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES): no zip here; its files are in {where} on the server.")
    for path in files:
        if sizes[path] <= cap:
            try:
                st.link_button(f"Download {path.name}", _link(path, cap))
            except downloads.TooLarge as exc:  # it grew since the listing
                st.caption(f"{exc}; it is on the server.")
        else:
            st.caption(f"{path.name} ({sizes[path]:,} bytes) is above the download cap "
                       "(LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES); it is on the server.")
