"""The dashboard: a Streamlit app for the person on call.

``app.py`` (login, filters, navigation, live refresh) runs the pages ``overview``, ``drift``,
``safety``, ``feedback``, ``alerts``, ``traces`` and ``export``; every read goes through the
short-TTL cache of ``data.py`` to the shared, parameterised reads of :mod:`llmsight.store.queries`;
acknowledgements and silences are written through alerting's API (:mod:`llmsight.alerts`), the
export through the review's (:mod:`llmsight.review`). ``server.py`` serves it in the current process
(``llmsight dashboard``, ``llmsight up``). Its settings are in ``settings.py``. Only the CLI imports it.
"""
