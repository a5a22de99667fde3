"""Text from events (prompts, outputs, errors, names, segments) shown as text, never as Markdown.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, ``st.error`` and friends: a prompt holding
``![x](https://tracker.example/p.png)`` would make every viewer's browser fetch a remote image, and
``[Reset your password](https://evil.example)`` would show as a disguised link. :func:`plain` escapes every
ASCII punctuation character (CommonMark lets any of them be escaped with a backslash), so the text shows as
written: no link, image, emphasis, code span, heading, list, HTML, LaTeX or colour directive can form.

Escapes do not stop GFM's *autolink literals*: Streamlit's Markdown renderer (remark-gfm) turns ``http://...``,
``www.`` and ``name@host`` found in the parsed text into links after the escapes are resolved (found by the
headless Chromium test of the Traces page). :func:`plain` puts an invisible WORD JOINER (U+2060) inside each
of them (``http:⁠//``, ``www⁠.``, ``name⁠@host``), which the autolink patterns do not match across; the text
reads the same.
"""

from __future__ import annotations

import re
import string
from typing import Any

_ESCAPES = {ord(c): "\\" + c for c in string.punctuation}
JOINER = "\u2060"
_AUTOLINKS = re.compile(r"(?i)(?<=https:)(?=//)|(?<=http:)(?=//)|(?<=www)(?=\.)|(?=@)")


def plain(value: Any, *, one_line: bool = True) -> str:
    """``value`` as Markdown source that renders exactly as the text (newlines become spaces with ``one_line``)."""
    text = "" if value is None else str(value)
    if one_line:
        text = " ".join(text.split())
    return _AUTOLINKS.sub(JOINER, text).translate(_ESCAPES)
