"""Login: required whenever the dashboard listens beyond localhost.

Two ways in, checked in this order:

* Streamlit's OIDC login (``st.login``), when an ``[auth]`` section is configured in secrets.toml; only the
  e-mail addresses and domains in ``LLMSIGHT_DASHBOARD_ALLOWED_USERS`` get in (the server refuses to start
  beyond localhost without that list);
* a password from ``LLMSIGHT_DASHBOARD_PASSWORD`` (give it through a secret, never a flag), at least
  :data:`MIN_PASSWORD_CHARS` characters (checked at start-up). After :data:`FREE_TRIES` wrong passwords from
  one client address, each further try must wait twice as long as the one before (1 s, 2 s, 4 s, ... up to
  15 minutes); a right password clears the count.

A login lasts ``LLMSIGHT_DASHBOARD_SESSION_HOURS`` (12 h by default). :func:`check_startup` makes the
server fail fast on any of these problems. :func:`current_user` is who is logged in: the OIDC e-mail, or
for a password login (one shared secret, no name) "password login from <address>", or on localhost the
server's own user; acknowledgements and silences are recorded under it.
"""

from __future__ import annotations

import getpass
import hmac
import ipaddress
import threading
import time
from dataclasses import dataclass

import streamlit as st

from llmsight import config
from llmsight.dashboard import settings
from llmsight.errors import ConfigError

_SESSION_KEY = "llmsight_authenticated"
_SINCE_KEY = "llmsight_login_at"
MIN_PASSWORD_CHARS = 12
FREE_TRIES = 5
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 900.0


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


def allowed_users() -> tuple[str, ...]:
    """The OIDC allowlist, lower-cased: e-mail addresses and domains (``@`` dropped from ``@example.com``)."""
    raw = config.resolve(settings.DASHBOARD_ALLOWED_USERS, strict=True) or ""
    return tuple(item.strip().lower().removeprefix("@") for item in raw.split(",") if item.strip())


def is_allowed(email: str | None, allowlist: tuple[str, ...]) -> bool:
    """True when ``email`` is on the list or its domain is (a domain matches exactly, not its subdomains)."""
    if not email or "@" not in email:
        return False
    email = email.strip().lower()
    return email in allowlist or email.rsplit("@", 1)[1] in allowlist


def session_seconds() -> float:
    return float(config.resolve(settings.DASHBOARD_SESSION_HOURS, strict=True)) * 3600.0


def check_startup(address: str) -> None:
    """Raise :class:`ConfigError` when listening on ``address`` would expose the dashboard without a sound login."""
    secret = password()
    if secret and len(secret) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"LLMSIGHT_DASHBOARD_PASSWORD is {len(secret)} characters long; use at least "
                          f"{MIN_PASSWORD_CHARS} (a long random one from a secret).")
    session_seconds()  # a bad LLMSIGHT_DASHBOARD_SESSION_HOURS stops the start too
    if is_local(address):
        return
    if oidc_configured():
        if not allowed_users():
            raise ConfigError(
                f"the dashboard would listen on {address or 'every interface'} with Streamlit's OIDC login but no "
                "allowlist, so anyone your identity provider knows could get in. Set LLMSIGHT_DASHBOARD_ALLOWED_USERS "
                "to the e-mail addresses or domains allowed (e.g. oncall@example.com,example.com).")
        return
    if secret:
        return
    shown = address or "every interface"
    raise ConfigError(
        f"the dashboard would listen on {shown} without a login. Set LLMSIGHT_DASHBOARD_PASSWORD "
        "(from a secret), configure Streamlit's OIDC login ([auth] in .streamlit/secrets.toml), "
        "or listen on 127.0.0.1."
    )


# -- failed passwords, per client address (shared by every session of this server process) ------------

@dataclass
class _Failures:
    count: int = 0
    wait_until: float = 0.0


class Backoff:
    """Wrong passwords per client: the first :data:`FREE_TRIES` are free, then each one doubles the wait."""

    def __init__(self, free: int = FREE_TRIES, first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S) -> None:
        self.free, self.first_s, self.max_s = free, first_s, max_s
        self._lock = threading.Lock()
        self._clients: dict[str, _Failures] = {}

    def wait_left(self, client: str, now: float | None = None) -> float:
        """Seconds this client must still wait before its next try (0: it may try now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            found = self._clients.get(client)
            return max(0.0, found.wait_until - now) if found else 0.0

    def failed(self, client: str, now: float | None = None) -> float:
        """Count a wrong password; returns the wait before the next try."""
        now = time.monotonic() if now is None else now
        with self._lock:
            found = self._clients.setdefault(client, _Failures())
            found.count += 1
            over = found.count - self.free
            delay = 0.0 if over < 0 else min(self.max_s, self.first_s * 2 ** over)
            found.wait_until = now + delay
            if len(self._clients) > 10_000:  # bounded memory: forget the clients that may try again already
                self._clients = {k: v for k, v in self._clients.items() if v.wait_until > now}
            return delay

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


BACKOFF = Backoff()


def client_address() -> str:
    """The visitor's address as Streamlit sees it (behind a proxy, the proxy's)."""
    try:
        address = st.context.ip_address
    except Exception:
        return "unknown"
    return address if isinstance(address, str) and address else "unknown"


def current_user() -> str:
    """Who is logged in, for acknowledgements and silences."""
    if is_local(str(st.get_option("server.address") or "")):
        return f"{getpass.getuser()}@localhost"
    if oidc_configured():
        try:
            email = st.user.get("email")
        except Exception:
            email = None
        return str(email or "unknown OIDC user")
    return f"password login from {client_address()}"


def _expired(since: float | None) -> bool:
    return since is None or time.time() - since > session_seconds()


def gate() -> None:
    """Stop the script run until the visitor has logged in (a no-op when listening on localhost)."""
    if is_local(str(st.get_option("server.address") or "")):
        return
    if oidc_configured():
        _oidc_gate()
        return
    secret = password()
    if not secret:
        st.error("This dashboard listens beyond localhost but has no login configured: "
                 "set LLMSIGHT_DASHBOARD_PASSWORD or Streamlit's OIDC login.")
        st.stop()
    if st.session_state.get(_SESSION_KEY):
        if _expired(st.session_state.get(_SINCE_KEY)):
            st.session_state[_SESSION_KEY] = False
            st.warning("Your session has expired; log in again.")
        else:
            if st.sidebar.button("Log out"):
                st.session_state[_SESSION_KEY] = False
                st.rerun()
            return
    st.title("llmsight")
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        client = client_address()
        wait = BACKOFF.wait_left(client)
        if wait > 0:
            # Not even checked: a guess during the wait tells nothing.
            st.error(f"Too many wrong passwords from your address; try again in {wait:.0f} s.")
            st.stop()
        # compare_digest: the time taken does not reveal how much of the password matched.
        if hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
            BACKOFF.succeeded(client)
            st.session_state[_SESSION_KEY] = True
            st.session_state[_SINCE_KEY] = time.time()
            st.rerun()
        delay = BACKOFF.failed(client)
        st.error("Wrong password." if delay <= 0 else f"Wrong password. Wait {delay:.0f} s before the next try.")
    st.stop()


def _oidc_gate() -> None:
    if not st.user.is_logged_in:
        st.title("llmsight")
        st.button("Log in", on_click=st.login, type="primary")
        st.stop()
    email = st.user.get("email")
    if not is_allowed(str(email) if email else None, allowed_users()):
        st.error(f"{email or 'This account'} is not allowed in this dashboard (LLMSIGHT_DASHBOARD_ALLOWED_USERS).")
        st.button("Log out", on_click=st.logout)
        st.stop()
    since = st.session_state.setdefault(_SINCE_KEY, time.time())
    issued = st.user.get("iat")
    if isinstance(issued, (int, float)):
        since = min(since, float(issued))
    if _expired(since):
        st.session_state.pop(_SINCE_KEY, None)
        st.logout()
        st.stop()
    st.sidebar.button("Log out", on_click=st.logout)
