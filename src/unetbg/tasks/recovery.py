"""When a worker's broker connection comes back, it sends again what may have been lost.

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
