"""``evaluate_job(job_id)``: score a checkpoint on a COCO split at original resolution."""

from __future__ import annotations

from celery import shared_task

from unetbg.db.models import Job
from unetbg.jobs import finish, jsonable
from unetbg.tasks.base import JobTask


@shared_task(bind=True, base=JobTask, name="unetbg.evaluate_job")
def evaluate_job(self: JobTask, job_id: str) -> dict:
    """Run ``evaluate_checkpoint`` with the job's params; the figures become ``Job.result``."""
    job = self.claim_job(job_id)
    if job is None:
        return {"job": job_id, "ran": False}
    from unetbg.training.evaluation import evaluate_checkpoint

    p = job.params
    with self.heartbeat(job_id):
        figures = evaluate_checkpoint(
            p["checkpoint"],
            p["coco_root"],
            p["split"],
            device=p.get("device", "auto"),
            threshold=p.get("threshold", 0.5),
            limit=p.get("limit"),
        )
    with self.session() as session:
        row = session.get(Job, job_id)
        row.result = jsonable(figures)
        row.progress_done = 1
        finish(row, "succeeded")
    self.log.info("%s iou %.4f on %s images", p["split"], figures["iou"], figures["images"])
    return {"job": job_id, "ran": True, "iou": figures["iou"]}
