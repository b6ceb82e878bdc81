"""The HTTP API (``unetbg serve``): rembg-compatible cut-outs, jobs, checkpoints, metrics.

One process, built by :func:`unetbg.api.app.create_app` from an :class:`ApiConfig`. It
reuses the job service (:mod:`unetbg.jobs`) and the inference code
(:class:`unetbg.inference.ModelInference`, :mod:`unetbg.removal`); it never imports the
CLI, and nothing but the CLI imports it. docs/api.md describes the endpoints.

The modules:

* ``config``: :class:`ApiConfig`, the frozen settings of one server;
* ``errors``: the service's refusals as JSON answers (``{"detail": …}``) and their statuses;
* ``auth``: the API key: the bearer check, a generated key for loopback use, the rule
  that a non-loopback address needs a key;
* ``roots``: server-side paths of jobs must lie under the configured roots;
* ``removal``: the model cache (one load per checkpoint) and the bounded queue that one
  inference thread empties in batches;
* ``remove_routes``: ``POST /api/remove``;
* ``runners``: embedded-mode job threads, failed when they die, cancelled at shutdown;
* ``job_requests``: the JSON bodies of ``POST /api/jobs`` and their path checks;
* ``jobs_routes``: ``/api/jobs`` and ``/api/checkpoints``;
* ``metrics``: ``GET /metrics`` (Prometheus text) and the request latency histogram;
* ``app``: the application: middleware, routes, start-up and shutdown.

Importing this package loads neither FastAPI nor torch.
"""

from unetbg.api.config import ApiConfig

__all__ = ["ApiConfig"]
