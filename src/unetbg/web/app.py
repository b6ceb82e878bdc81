"""Entry script for ``streamlit run`` (started by ``unetbg web``): two views."""

import streamlit as st

from unetbg.web import jobs_page, remove_page

st.set_page_config(page_title="unetbg", page_icon="✂️", layout="wide")
page = st.navigation(
    [
        st.Page(remove_page.render, title="Remove background", url_path="remove", default=True),
        st.Page(jobs_page.render, title="Jobs", url_path="jobs"),
    ]
)
page.run()
