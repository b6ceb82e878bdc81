# The unetbg worker image: `unetbg worker`, `unetbg flower` and `unetbg db upgrade`.
# torch comes from PyPI with its CUDA libraries, so the same image serves GPU workers
# (run with a GPU reserved, see docker-compose.yml) and CPU workers.

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps . -w /wheels

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UNETBG_DATA_DIR=/data

# Pinned and in its own layer: torch is most of the image and changes least often.
RUN pip install torch==2.14.1 torchvision==0.29.1

COPY --from=build /wheels /wheels
# A regular (non-editable) install: the migrations ship inside the package. With the
# s3 extra, so that a worker of this image takes `remove-dir s3://…` jobs.
RUN pip install "$(echo /wheels/*.whl)[s3]" && rm -rf /wheels

# Workers never need root. The volume mount points belong to the worker user so
# fresh named volumes are writable.
RUN useradd --create-home --uid 10001 unetbg \
    && mkdir -p /data /images /coco \
    && chown unetbg:unetbg /data /images
USER unetbg
WORKDIR /home/unetbg

CMD ["unetbg", "--help"]
