"""Export: run the weekly quality-review export for a week and download its files.

The export is :func:`llmsight.review.export.export_week`, the same code as ``llmsight export``
and the weekly job; it writes to ``LLMSIGHT_EXPORT_DIR/<week>/``.

Nothing is read for the downloads while the page renders: each download button gets a callable that
Streamlit runs on the click. The zip is built then, file by file from disk into an unnamed temporary
file (never the whole export in memory while building), and handed over as an open file. A file or an
export larger than ``LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES`` is not offered: the page says where it is on
the server instead. The week offered is the last
complete one; exported before its feedback grace ends (Tuesday 00:00 UTC) it is provisional, and the
page says so, as the export's own files do.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import streamlit as st

from llmsight import config
from llmsight.dashboard import data, settings
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


def zipped(files: list[Path], max_bytes: int) -> IO[bytes]:
    """The files zipped into an unnamed temporary file (deleted when closed), rewound; raises ValueError when
    the zip would pass ``max_bytes``."""
    out = tempfile.TemporaryFile()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, arcname=path.name)  # streamed from disk in chunks
                if out.tell() > max_bytes:
                    raise ValueError(f"the zip passed {max_bytes:,} bytes")
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise


def _on_click_zip(files: list[Path], max_bytes: int) -> Callable[[], IO[bytes]]:
    return lambda: zipped(files, max_bytes)


def _on_click_file(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


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
    cap = max_download_bytes()
    sizes = {path: path.stat().st_size for path in files}
    if sum(sizes.values()) <= cap:
        st.download_button("Download all (zip)", _on_click_zip(files, cap), file_name=f"llmsight-{done['week']}.zip",
                           mime="application/zip", key="export_zip")
    else:
        st.info(f"The export is {sum(sizes.values()):,} bytes, more than the {cap:,} bytes offered for download "
                f"(LLMSIGHT_DASHBOARD_DOWNLOAD_MAX_BYTES): no zip here; its files are in {files[0].parent} on the "
                "server.")
    for path in files:
        if sizes[path] <= cap:
            st.download_button(f"Download {path.name}", _on_click_file(path), file_name=path.name,
                               key=f"export_file_{path.name}")
        else:
            st.caption(f"{path.name} ({sizes[path]:,} bytes) is above the download cap; it is on the server.")
