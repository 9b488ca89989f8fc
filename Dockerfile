# syntax=docker/dockerfile:1
# cloud-job-exporter: `docker build -t cloud-job-exporter .` then `docker run -p 9810:9810 cloud-job-exporter`
# shows live metrics of the built-in demo at http://localhost:9810/metrics. For real sources:
#   docker run -v $PWD/config.yaml:/etc/cloud-job-exporter/config.yaml:ro -e ALIBABA_CLOUD_ACCESS_KEY_ID ... \
#     cloud-job-exporter --config.file=/etc/cloud-job-exporter/config.yaml
# .ci/wheel-smoke builds and installs the wheel exactly as the two stages below do, and starts it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: build the wheel.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: install the wheel into a virtual environment; no compilers, no pip cache, no source tree.
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile /wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall --yes pip
LABEL org.opencontainers.image.title="cloud-job-exporter" \
      org.opencontainers.image.description="Prometheus exporter for jobs on MaxCompute, EMR Serverless Spark and DataArts Factory" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric user and group (no entry in /etc/passwd needed), so Kubernetes can verify runAsNonRoot.
USER 65532:65532
WORKDIR /tmp
EXPOSE 9810
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9810/-/healthy', timeout=4)"]
ENTRYPOINT ["cloud-job-exporter"]
CMD ["--demo"]
