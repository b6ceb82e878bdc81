"""Which outputs to write, and writing them: shared by ``unetbg remove``,
``unetbg remove-dir``, the Celery chunk task, ``ModelInference`` and the web page.

* :mod:`~unetbg.removal.planning` (pure file-system logic, no torch):
  :func:`plan_folder` maps a folder tree onto an output tree, :func:`plan_files` maps
  a few named files into one folder; both return :class:`PlannedItem` rows, with a
  ``skip_reason`` for anything that will not be processed. Output naming rules are
  in that module's docstring.
* :mod:`~unetbg.removal.outputs`: :class:`OutputOptions`, :func:`render_output`,
  encoding and the atomic write of one output.
* :mod:`~unetbg.removal.request`: :class:`RunOptions` (how the model runs) and
  :class:`RemovalRequest` (checkpoint + outputs + run options, as a job records them),
  and :func:`output_options`, the one rule for the default output kind.
* :mod:`~unetbg.removal.pipeline`: :func:`process_images` reads, predicts in batches,
  renders and writes, in overlapping stages with bounded queues; a failing image
  becomes an error in its :class:`ItemResult`, never the end of the batch.
* :mod:`~unetbg.removal.presence`: :func:`person_share` and :func:`no_person`, the
  one definition of "no person found".
"""

from unetbg.removal.formats import (
    DEFAULT_PNG_LEVEL,
    FORMATS,
    KINDS,
    normalize_format,
    output_suffix,
)
from unetbg.removal.names import unique_output_names
from unetbg.removal.outputs import (
    OutputExistsError,
    OutputOptions,
    encode_output,
    load_background,
    parse_color,
    render_output,
    save_params,
    write_encoded,
)
from unetbg.removal.pipeline import (
    BatchSummary,
    ItemResult,
    MaskPredictor,
    PipelineLimits,
    PipelineStats,
    process_images,
)
from unetbg.removal.planning import (
    IMAGE_EXTENSIONS,
    SKIP_EXISTS,
    SKIP_NOT_IMAGE,
    PlanError,
    PlannedItem,
    plan_files,
    plan_folder,
    plan_in_folder,
)
from unetbg.removal.presence import NO_PERSON_SHARE, no_person, person_share
from unetbg.removal.request import (
    BACKENDS,
    DEFAULT_BATCH_SIZE,
    KindConflict,
    RemovalRequest,
    RunOptions,
    describe_run,
    output_kind,
    output_options,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "KindConflict",
    "RemovalRequest",
    "RunOptions",
    "describe_run",
    "output_kind",
    "output_options",
    "NO_PERSON_SHARE",
    "no_person",
    "person_share",
    "DEFAULT_PNG_LEVEL",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "KINDS",
    "SKIP_EXISTS",
    "SKIP_NOT_IMAGE",
    "BatchSummary",
    "ItemResult",
    "MaskPredictor",
    "OutputExistsError",
    "OutputOptions",
    "PipelineLimits",
    "PipelineStats",
    "PlanError",
    "PlannedItem",
    "encode_output",
    "load_background",
    "normalize_format",
    "output_suffix",
    "parse_color",
    "plan_files",
    "plan_folder",
    "plan_in_folder",
    "process_images",
    "render_output",
    "save_params",
    "unique_output_names",
    "write_encoded",
]
