"""Login: required whenever the dashboard listens beyond localhost.

Two ways in, checked in this order:

* Streamlit's OIDC login (``st.login``), when an ``[auth]`` section is configured in secrets.toml;
* a password from ``LLMSIGHT_DASHBOARD_PASSWORD`` (give it through a secret, never a flag).

:func:`check_startup` makes the server fail fast when it would listen beyond localhost with neither.
"""

from __future__ import annotations

import hmac
import ipaddress

import streamlit as st

from llmsight import config
from llmsight.dashboard import settings
from llmsight.errors import ConfigError

_SESSION_KEY = "llmsight_authenticated"


def is_local(address: str) -> bool:
    """True for loopback addresses only; an empty address means every interface, so not local."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def oidc_configured() -> bool:
    """True when secrets.toml has an ``[auth]`` section for ``st.login``."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def password() -> str:
    return config.resolve(settings.DASHBOARD_PASSWORD, strict=True) or ""


def check_startup(address: str) -> None:
    """Raise :class:`ConfigError` when listening on ``address`` would expose the dashboard without a login."""
    if is_local(address) or password() or oidc_configured():
        return
    shown = address or "every interface"
    raise ConfigError(
        f"the dashboard would listen on {shown} without a login. Set LLMSIGHT_DASHBOARD_PASSWORD "
        "(from a secret), configure Streamlit's OIDC login ([auth] in .streamlit/secrets.toml), "
        "or listen on 127.0.0.1."
    )


def gate() -> None:
    """Stop the script run until the visitor has logged in (a no-op when listening on localhost)."""
    if is_local(str(st.get_option("server.address") or "")):
        return
    if oidc_configured():
        if st.user.is_logged_in:
            st.sidebar.button("Log out", on_click=st.logout)
            return
        st.title("llmsight")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    secret = password()
    if not secret:
        st.error("This dashboard listens beyond localhost but has no login configured: "
                 "set LLMSIGHT_DASHBOARD_PASSWORD or Streamlit's OIDC login.")
        st.stop()
    if st.session_state.get(_SESSION_KEY):
        if st.sidebar.button("Log out"):
            st.session_state[_SESSION_KEY] = False
            st.rerun()
        return
    st.title("llmsight")
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        # compare_digest: the time taken does not reveal how much of the password matched.
        if hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
            st.session_state[_SESSION_KEY] = True
            st.rerun()
        st.error("Wrong password.")
    st.stop()
