"""``unetbg remove-dir IN OUT --watch``: keep a remove-dir job open and add each new or
changed image under IN to it, once its file is complete.

* ``readiness``: when a file that changed is complete (a pure rule over events and stats);
* ``observer``: watchdog's events under the folder, fed to that rule;
* ``runner``: the thread that runs the job's chunks in this process (embedded mode);
* ``session``: the loop tying them to the job service (:mod:`unetbg.jobs.watched`).
"""

from __future__ import annotations

from unetbg.watch.session import DEFAULT_SETTLE_S, WatchSession

__all__ = ["DEFAULT_SETTLE_S", "WatchSession"]
