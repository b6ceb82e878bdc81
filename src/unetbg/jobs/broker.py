"""The broker as the job service reaches it: a Redis client (redis is imported only
here, when a broker is configured), and whether the broker answers at all.

:func:`check_broker` runs before a job is recorded: a job that could never be sent to
the workers would otherwise be recorded, its id printed, and then marked failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from unetbg.jobs.errors import BrokerUnreachable
from unetbg.settings import Settings, get_settings, mask_url

#: Broker URL schemes the Redis client reaches (Celery's Redis transport's).
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Seconds a submission waits for the broker's answer before refusing.
CHECK_TIMEOUT_S = 5


@contextmanager
def broker_client(settings: Settings, timeout_s: float) -> Iterator[Any]:
    """A Redis client on the broker, closed afterwards."""
    import redis

    client = redis.Redis.from_url(
        settings.broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        yield client
    finally:
        client.close()


def check_broker(settings: Settings | None = None) -> None:
    """Raise :class:`BrokerUnreachable` (one line naming the URL, password masked) when
    the broker does not answer a ``PING``; nothing to check in embedded mode."""
    settings = settings or get_settings()
    if settings.embedded or urlsplit(settings.broker_url).scheme not in REDIS_SCHEMES:
        return
    import redis

    try:
        with broker_client(settings, timeout_s=CHECK_TIMEOUT_S) as client:
            client.ping()
    except redis.RedisError as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the client said
        raise BrokerUnreachable(
            f"broker {mask_url(settings.broker_url)} unreachable ({reason}); nothing was "
            "recorded: start it, or unset UNETBG_BROKER_URL to run jobs in this process"
        ) from None
