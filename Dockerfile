# Single-process trainer image: Node (the runtime) + the pinned Python venv it drives.
# Build:  docker build -t vision-trainer .
#         (BuildKit; --build-arg BASE_IMAGE=... picks another Debian bookworm image with Node.js
#         >= 20.19; behind a TLS-intercepting proxy add --secret id=ca,src=/path/to/ca-bundle.crt)
# Run:    docker run --rm --gpus all --env-file job.env vision-trainer train
# Only production requirements go in: python/requirements.txt and the export converters of
# python/requirements-export.txt (CoreML, TFLite); the dev stack's S3 server, sample data and test
# tools are python/requirements-dev.txt, never installed here.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive
# tini is PID 1: it forwards SIGTERM to Node, which stops training after the current batch,
# uploads the last checkpoint and reports before exiting. python3.11 matches the pinned torch.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini python3 python3-venv python3-pip libgl1 libglib2.0-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM base AS python
COPY python/requirements.txt /tmp/requirements.txt
COPY python/requirements-export.txt /tmp/requirements-export.txt
# The optional `ca` secret is a CA bundle for pip (a proxy that re-signs TLS); it never lands in a layer.
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-export.txt -c /tmp/requirements.txt

FROM base AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node's CPU binaries ship in the package; its install script would fetch CUDA ones.
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi \
 && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src src
COPY adapters adapters
COPY bench bench
COPY scripts scripts
COPY examples examples
COPY runtime runtime
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM base
WORKDIR /app
COPY --from=python /opt/venv /opt/venv
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY python/requirements.txt python/requirements.txt
COPY python/vision_trainer python/vision_trainer
COPY runtime runtime
# Least privilege: the job runs as an unprivileged user (numeric, so Kubernetes' runAsNonRoot can
# verify it). /app and /opt/venv stay owned by root (COPY's 0644/0755), read-only to that user:
# a checkpoint or dataset that got code to run could not change the application. The job writes
# only to WORK_DIR (/workspace) and /tmp, the two volumes deploy/k8s mounts over a read-only
# root filesystem. Bytecode is compiled now: Python cannot write __pycache__ there later.
RUN /opt/venv/bin/python -m compileall -q /app/python \
 && groupadd --system --gid 10001 trainer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin trainer \
 && mkdir -p /workspace \
 && chown 10001:10001 /workspace
ENV PYTHON_BIN=/opt/venv/bin/python \
    NODE_ENV=production \
    WORK_DIR=/workspace \
    LOG_FORMAT=json \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/src/cli.js"]
CMD ["train"]
