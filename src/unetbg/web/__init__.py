"""The Streamlit page: cut-outs for uploaded photos and a read-only job dashboard.

Importing this package loads neither Streamlit nor torch; ``unetbg web`` runs
:data:`APP_PATH` with ``streamlit run``.
"""

from pathlib import Path

#: The script ``streamlit run`` executes.
APP_PATH = Path(__file__).with_name("app.py")
