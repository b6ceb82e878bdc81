"""``evaluate_job(job_id)``: score a checkpoint on a COCO split at original resolution."""

from __future__ import annotations

from celery import shared_task

from unetbg.jobs import claims
from unetbg.tasks.base import CancelFlag, JobCancelled, JobTask


@shared_task(bind=True, base=JobTask, name="unetbg.evaluate_job")
def evaluate_job(self: JobTask, job_id: str) -> dict:
    """Run ``evaluate_checkpoint`` with the job's params; the figures become ``Job.result``."""
    job = self.claim_job(job_id)
    if job is None:
        self.raise_if_cancelled(job_id)
        return {"job": job_id, "ran": False}
    from unetbg.training.evaluation import EvaluationStopped, evaluate_checkpoint

    p = job.params
    stop = CancelFlag(self, job_id)
    try:
        with self.heartbeat(job_id):
            # The options of `unetbg evaluate`; a job recorded before them has COCO only.
            figures = evaluate_checkpoint(
                p["checkpoint"],
                p.get("coco_root"),
                p["split"],
                device=p.get("device", "auto"),
                threshold=p.get("threshold", 0.5),
                limit=p.get("limit"),
                should_stop=stop,
                data=tuple(p.get("data") or ()),
                val_percent=p.get("val_percent", 10),
                batch_size=p.get("batch_size", 8),
                image_size=p.get("image_size"),
                **(p.get("switches") or {}),
            )
    except EvaluationStopped as exc:
        # Cancelled (not taken over: then nothing is written): the job ends here.
        claims.end_owned_job(job_id, "cancelled", settings=self.settings)
        self.log.info("evaluation %s: %s", stop.reason, exc)
        if stop.reason == "cancelled":
            raise JobCancelled(f"job {job_id}: evaluation cancelled") from None
        return {"job": job_id, "ran": True, "status": stop.reason}
    if not claims.end_owned_job(job_id, "succeeded", figures, 1, settings=self.settings):
        return {"job": job_id, "ran": True, "status": "taken over"}
    self.log.info("%s iou %.4f on %s images", p["split"], figures["iou"], figures["images"])
    return {"job": job_id, "ran": True, "iou": figures["iou"]}
