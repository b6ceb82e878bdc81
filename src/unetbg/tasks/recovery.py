"""What a worker sends again: messages a broker restart lost, and the work of dead workers.

Two ways a Redis restart loses a message even with ``appendonly yes``:

* Redis hands a message out (``BRPOP``) before kombu records it as unacknowledged; a
  Redis that stops between the two has removed it from the queue and kept no copy.
* Celery drops the messages a worker reserved but had not started when its connection
  broke; they stay in Redis' unacknowledged set until the visibility window ends
  (``UNETBG_VISIBILITY_TIMEOUT``, hours).

Either way a remove-dir job would wait at, say, 22 of 24 images for hours, or for
ever. So on every reconnect (not at the first connection: nothing was lost on the way
then) the worker sends again each unstarted piece of work whose message no queue holds
(:func:`unetbg.jobs.resend_lost`). Copies are harmless: a chunk claims only the images
nobody live holds, and a duplicate of a live run is deferred. A Redis restarted
while no worker was connected is still answered by ``unetbg retry`` (docs/jobs.md).
"""

from __future__ import annotations

import logging

from celery import bootsteps

log = logging.getLogger(__name__)


class ResendLost(bootsteps.StartStopStep):
    """Consumer step: after a reconnect, send again the work the broker may have lost."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c) -> None:
        if c.restart_count < 1:  # the first connection of this worker
            return
        from unetbg.jobs import queued_task_ids, resend_lost

        try:
            sent = resend_lost(queued_task_ids())
        except Exception:  # the worker must go on consuming whatever happens here
            log.exception("could not check for messages lost while the broker was away")
            return
        if sent:
            log.warning(
                "sent again %d message(s) lost while the broker was away: %s",
                len(sent),
                ", ".join(sent),
            )
        else:
            log.info("broker reconnected: no message of an unfinished job was lost")


class RecoverLostWork(bootsteps.StartStopStep):
    """Consumer step: every few seconds, send again the images of dead workers.

    A worker killed whole (OOM killer, ``kill -9``, a lost host) leaves its chunk's
    message unacknowledged in Redis until the visibility timeout (hours) and its images
    ``running`` under a claimant that will never write again. Every live worker checks
    for such claimants every :func:`unetbg.jobs.recovery_interval` seconds (a dead pid
    on this host is certain at once; another host's claimant after
    ``heartbeat_timeout``) and sends their images again (:func:`unetbg.jobs.
    recover_lost_work`), so the job finishes on the workers that are left.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry = None

    def start(self, c) -> None:
        from unetbg.jobs import recovery_interval
        from unetbg.settings import get_settings

        # In the main process's event loop: a short query, and a publish when needed.
        self.timer_entry = c.timer.call_repeatedly(recovery_interval(get_settings()), self.recover)

    def stop(self, c) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def recover(self) -> None:
        from unetbg.jobs import recover_lost_work

        try:
            sent = recover_lost_work()
        except Exception:  # a DB or broker blip: the next round tries again
            log.exception("could not check for the work of dead workers")
            return
        if sent:
            log.warning("sent again %d chunk(s) of dead workers: %s", len(sent), ", ".join(sent))
