# Runtime image of pipeteer stages: `pipeteer run APP --backend kafka://HOST:PORT --stage NAME`.
# Slim, non-root (UID 10001), works with a read-only root filesystem (writes only to /tmp).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeteer ./pipeteer
COPY topologies ./topologies
RUN python -m venv /opt/pipeteer \
 && /opt/pipeteer/bin/pip install ".[kafka,examples]"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/pipeteer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
RUN groupadd --system --gid 10001 pipeteer \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin pipeteer
COPY --from=build /opt/pipeteer /opt/pipeteer
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
CMD ["pipeteer", "--help"]
