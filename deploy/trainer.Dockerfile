# syntax=docker/dockerfile:1
# The loraflow trainer: torch, transformers, PEFT, TRL on CUDA. One retraining cycle (Kubernetes CronJob):
#   docker run --gpus all ... loraflow-trainer:0.1.0 train --tenant acme
# or the nightly scheduler as a long-lived process (compose): the default command.
#   docker build -f deploy/trainer.Dockerfile -t loraflow-trainer:0.1.0 .
# CUDA's user-space libraries come with the torch wheels; the CUDA base image brings the container runtime's
# settings (NVIDIA_VISIBLE_DEVICES, driver capabilities) and nothing heavy. No secret is read at build time.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Ubuntu's python3.12 follows the pinned base image; apt versions are not pinned on top of it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (empty package folders), sources after: a code change does not reinstall torch.
COPY pyproject.toml README.md ./
# Versions come from pyproject.toml's ranges; pin them with a constraints file if builds must be repeatable.
# hadolint ignore=DL3013
RUN mkdir gateway feedback retrieval trainer \
    && pip install ".[trainer,postgres,s3]" \
    && pip uninstall -y loraflow
COPY gateway ./gateway
COPY feedback ./feedback
COPY retrieval ./retrieval
COPY trainer ./trainer
RUN pip install --no-deps .

FROM ${CUDA_IMAGE}
LABEL org.opencontainers.image.title="loraflow-trainer" \
      org.opencontainers.image.description="Retrains loraflow's LoRA adapters from feedback" \
      org.opencontainers.image.licenses="Apache-2.0"
# Ubuntu's python3.12 follows the pinned base image; apt versions are not pinned on top of it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 loraflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/loraflow --create-home \
       --shell /usr/sbin/nologin loraflow \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/loraflow /home/loraflow/.cache
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LORAFLOW_VAR_DIR=/var/lib/loraflow
WORKDIR /home/loraflow
USER 10001:10001
# A batch job and a scheduler loop serve no HTTP: their health is their exit status and their run reports.
HEALTHCHECK NONE
ENTRYPOINT ["loraflow"]
CMD ["scheduler"]
