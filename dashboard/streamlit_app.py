"""The script Streamlit runs: ``streamlit run`` or :func:`llmsight.dashboard.server.run` points here."""

from llmsight.dashboard.app import main

main()
