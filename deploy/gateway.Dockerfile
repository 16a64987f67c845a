# syntax=docker/dockerfile:1
# The loraflow gateway: FastAPI + httpx, PostgreSQL and S3 clients, no torch. Attach it to running vLLM engines:
#   docker build -f deploy/gateway.Dockerfile -t loraflow-gateway:0.1.0 .
#   docker run -e LORAFLOW_ENGINE__URLS='["http://engine:8000"]' ... loraflow-gateway:0.1.0
# With retrieval (sentence-transformers, FAISS, torch; a much larger image):
#   docker build -f deploy/gateway.Dockerfile --build-arg RETRIEVAL=1 -t loraflow-gateway:0.1.0-retrieval .
# Pass PyTorch's CPU-only wheel index as PIP_EXTRA_INDEX_URL to keep CUDA wheels out of a retrieval build.
# No secret is read at build time: keys and the database URL come from the environment or LORAFLOW_SECRETS_DIR.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG RETRIEVAL=0
# Seen by pip as an environment variable during the RUN steps of this stage only, never in the final image.
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the metadata alone (empty package folders), then the sources: a code change rebuilds
# only the last, small layer. README.md is there because pyproject.toml names it as the readme.
COPY pyproject.toml README.md ./
# Versions come from pyproject.toml's ranges; pin them with a constraints file if builds must be repeatable.
# hadolint ignore=DL3013
RUN mkdir gateway feedback retrieval trainer \
    && extras="postgres,s3" \
    && if [ "$RETRIEVAL" = "1" ]; then extras="$extras,retrieval"; fi \
    && pip install ".[$extras]" \
    && pip uninstall -y loraflow
COPY gateway ./gateway
COPY feedback ./feedback
COPY retrieval ./retrieval
COPY trainer ./trainer
RUN pip install --no-deps . \
    && if [ "$RETRIEVAL" != "1" ] && python -c "import torch" 2>/dev/null; then \
         echo "torch found in a gateway image built without retrieval" >&2; exit 1; fi

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="loraflow-gateway" \
      org.opencontainers.image.description="OpenAI-compatible gateway serving LoRA adapters on vLLM" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, non-root uid/gid (10001), the same in the trainer image, so both can write the shared volume.
RUN groupadd --system --gid 10001 loraflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/loraflow --create-home \
       --shell /usr/sbin/nologin loraflow \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/loraflow
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    LORAFLOW_VAR_DIR=/var/lib/loraflow \
    LORAFLOW_HOST=0.0.0.0 \
    LORAFLOW_PORT=8000 \
    LORAFLOW_WORKERS=1
WORKDIR /home/loraflow
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); readiness (/ready) is the orchestrator's business.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["loraflow"]
# Attach mode: the engine URLs come from LORAFLOW_ENGINE__URLS or --engine-url; a container never starts vLLM.
# LORAFLOW_WORKERS=N (`up --workers N`): N gateway processes on the one port, one per core the container gets
# (at most 4 on the embedded SQLite database; with PostgreSQL, any).
CMD ["up", "--host", "0.0.0.0", "--port", "8000"]
