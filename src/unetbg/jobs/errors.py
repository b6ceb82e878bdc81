"""What the job service refuses, with messages meant for the person who asked."""

from __future__ import annotations


class JobError(Exception):
    """A request the service refuses, with a message meant for the person who made it."""


class JobNotFound(JobError):
    """No job has the given id (or the prefix given is ambiguous)."""


class NoCheckpointError(JobError):
    """The checkpoint asked for (``best``, a registered id, a path) does not exist."""


class BrokerUnreachable(JobError):
    """The broker cannot be reached: no job is recorded (it could not be started)."""
