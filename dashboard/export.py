"""Export: run the weekly quality-review export for a week and download its files."""

from __future__ import annotations

import datetime as dt
import io
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from llmsight.dashboard import data
from llmsight.dashboard.queries import Filters

FORMATS = ("parquet", "csv", "html")


def last_complete_week(today: dt.date | None = None) -> str:
    """The ISO week before the current one, as ``2026-W47``."""
    day = (today or dt.datetime.now(dt.timezone.utc).date()) - dt.timedelta(days=7)
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def run_export(week: str, formats: list[str]) -> list[Path]:
    """Call the analyzers' export into a fresh folder; return the files it wrote."""
    from llmsight.analyzers import export

    out = Path(tempfile.mkdtemp(prefix=f"llmsight-export-{week}-"))
    export.export_week(data.client(), week=week, formats=tuple(formats), out=out)
    return sorted(p for p in out.rglob("*") if p.is_file())


def zipped(files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, arcname=path.name)
    return buffer.getvalue()


def render(f: Filters) -> None:
    del f  # the export covers a whole ISO week and every segment
    st.title("Export")
    st.caption("The weekly quality review: per-segment figures against the week before, drift topics, flagged "
               "outputs, acceptance by prompt version, alerts and a review sample.")
    with st.form("export"):
        week = st.text_input("ISO week", value=last_complete_week(), key="export_week")
        formats = st.multiselect("Formats", list(FORMATS), default=list(FORMATS), key="export_formats")
        submitted = st.form_submit_button("Run export", type="primary")
    if submitted:
        try:
            with st.spinner(f"Exporting {week}…"):
                files = run_export(week.strip(), formats)
        except ImportError:
            st.error("The export is not installed in this build (llmsight.analyzers.export).")
            return
        except Exception as exc:  # the reason goes to the person who asked, not into a traceback
            st.error(f"The export failed: {exc}")
            return
        st.session_state["export_files"] = [str(p) for p in files]
        st.session_state["export_week_done"] = week.strip()
    files = [Path(p) for p in st.session_state.get("export_files", []) if Path(p).exists()]
    if files:
        done = st.session_state.get("export_week_done", "")
        st.success(f"Export of {done}: {len(files)} files.")
        st.dataframe([{"file": p.name, "bytes": p.stat().st_size} for p in files], hide_index=True,
                     width="stretch", key="export_listing")
        st.download_button("Download all (zip)", zipped(files), file_name=f"llmsight-{done}.zip",
                           mime="application/zip", key="export_zip")
        for path in files:
            st.download_button(f"Download {path.name}", path.read_bytes(), file_name=path.name,
                               key=f"export_file_{path.name}")


