"""The link an alert notification carries (LLMSIGHT_DASHBOARD_URL) opens that alert on the Alerts page (AppTest on
a seeded chdb store)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlparse

import pytest

from llmsight.alerts.mail import alert_link
from tests.integration.test_dashboard_pages import SEG_A, page, seeded  # noqa: F401

pytestmark = pytest.mark.usefixtures("streamlit_on_localhost")


@pytest.mark.parametrize("alert_id", ["al-a", "al-r"])
def test_the_notification_link_opens_its_alert(seeded, alert_id):  # noqa: F811
    segment = dict(zip(("service", "name", "model", "prompt_version"), SEG_A, strict=True))
    link = alert_link("https://llmsight.example.com", {"alert_id": alert_id, "segment": segment})
    assert urlparse(link).path == "/alerts"
    params = dict(parse_qsl(urlparse(link).query))
    app = page("alerts", **params)
    choice = app.selectbox(key="alert_choice")
    assert len(choice.options) == 2  # the link's segment filter leaves SEG_A's two alerts
    assert choice.value is not None and choice.value.endswith(f"· {alert_id}")
