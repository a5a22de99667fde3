"""The dashboard: a Streamlit app for the person on call.

``app.py`` (login, filters, navigation, live refresh) runs the pages ``overview``, ``drift``,
``safety``, ``feedback``, ``alerts``, ``traces`` and ``export``; every SQL statement is in
``queries.py`` (parameterised) behind the short-TTL cache of ``data.py``; ``server.py`` serves it
in the current process (``llmsight dashboard``, ``llmsight up``).
"""
