"""Entry script for ``streamlit run`` (started by ``unetbg web``): two views, each at
its own address (``/remove``, ``/jobs``); the bare address opens ``/remove``."""

import streamlit as st

from unetbg.web import jobs_page, remove_page

st.set_page_config(page_title="unetbg", page_icon="✂️", layout="wide")
remove = st.Page(remove_page.render, title="Remove background", url_path="remove")
jobs = st.Page(jobs_page.render, title="Jobs", url_path="jobs")


def _open_remove() -> None:
    # Streamlit serves its default page at the bare address only, never at its own
    # url_path: were Remove background the default, /remove would be "Page not found".
    # The default is this hidden stop on the way, so each view has one address.
    st.switch_page(remove)


start = st.Page(_open_remove, title="unetbg", url_path="start", default=True, visibility="hidden")
st.navigation([start, remove, jobs]).run()
