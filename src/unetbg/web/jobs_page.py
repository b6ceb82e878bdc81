"""The read-only job dashboard: recent jobs, a job's failed items, a training
job's per-epoch curves and its checkpoints.

It never writes (it does not even mark lost jobs, which `unetbg jobs` does):
cancelling and submitting stay on the command line. Live worker state is Flower's
job; the page links there when ``UNETBG_FLOWER_URL`` is set.
"""

from __future__ import annotations

import json

import streamlit as st

from unetbg.web import tables

_TIME = "YYYY-MM-DD HH:mm:ss"


def render() -> None:
    """Draw the dashboard (a Streamlit page function)."""
    from unetbg import jobs
    from unetbg.settings import get_settings, mask_url
    from unetbg.web.common import schema_ready

    settings = get_settings()
    st.title("Jobs")
    top = st.columns([4, 1, 1], vertical_alignment="center")
    top[0].caption(f"Database {mask_url(settings.database_url)} · read-only view")
    top[1].button("Refresh", help="Read the records again.")
    if settings.flower_url:
        top[2].link_button("Open Flower", settings.flower_url, help="Live worker monitoring.")

    if not schema_ready():
        return
    recent = jobs.list_jobs(limit=50, settings=settings)
    if not recent:
        st.info(
            "No jobs recorded yet: start one with `unetbg remove-dir` or `unetbg submit-train`."
        )
        return
    st.dataframe(
        tables.jobs_table(recent),
        hide_index=True,
        column_config={
            "created": st.column_config.DatetimeColumn(format=_TIME),
            "started": st.column_config.DatetimeColumn(format=_TIME),
            "finished": st.column_config.DatetimeColumn(format=_TIME),
        },
    )
    by_id = {job.id: job for job in recent}
    job_id = st.selectbox(
        "Job",
        list(by_id),
        format_func=lambda i: f"{i} · {by_id[i].kind} · {by_id[i].state}",
    )
    _job_section(by_id[job_id], settings)


def _job_section(job, settings) -> None:
    from unetbg import jobs

    st.subheader(f"Job {job.id} ({job.kind})")
    cols = st.columns(4)
    cols[0].metric("State", job.state)
    cols[1].metric("Progress", f"{job.progress_done}/{job.progress_total}")
    cols[2].metric("Attempts", job.attempts)
    cols[3].metric("Worker", job.worker_host or "-")
    if job.step_text:  # a training job inside its epoch
        st.caption(f"Now: {job.step_text}")
    if job.state == "running" and not jobs.heartbeat_fresh(job, settings):
        st.warning(
            f"No heartbeat within {settings.heartbeat_timeout} s: its worker may be lost "
            "(`unetbg jobs` marks it failed)."
        )
    if job.error:
        st.error(job.error)
    if job.items:
        st.caption("Items: " + ", ".join(f"{n} {state}" for state, n in sorted(job.items.items())))
    with st.expander("Parameters and result"):
        st.code(json.dumps({"params": job.params, "result": job.result}, indent=2, default=str))

    if job.kind == "remove_dir":
        failed = jobs.list_items(job.id, states=["failed"], settings=settings)
        if failed:
            st.markdown(f"**Failed items ({len(failed)})**")
            st.dataframe(tables.failed_table(failed), hide_index=True)

    if job.kind == "train":
        curves = tables.epoch_curves(jobs.list_epoch_metrics(job.id, settings=settings))
        if curves:
            st.markdown("**Per-epoch curves**")
            columns = st.columns(2)
            for i, (title, frame) in enumerate(curves.items()):
                with columns[i % 2]:
                    st.caption(title)
                    st.line_chart(frame, x_label="epoch", y_label=title, height=220)
        else:
            st.info("No epoch has finished yet.")
        checkpoints = jobs.list_checkpoints(job.id, settings=settings)
        if checkpoints:
            st.markdown("**Checkpoints**")
            st.dataframe(
                tables.checkpoints_table(checkpoints),
                hide_index=True,
                column_config={"created": st.column_config.DatetimeColumn(format=_TIME)},
            )
