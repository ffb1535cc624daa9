# syntax=docker/dockerfile:1
# The DataFlow operator image: `kopf run -m dataflow.k8s.operator`, as a non-root user.

FROM python:3.11-slim AS builder
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md* ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links=/wheels dataflow-schema \
    && rm -rf /wheels \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin dataflow
USER 10001
WORKDIR /tmp
EXPOSE 8080
# Kubernetes liveness/readiness probes on :8080/healthz do the health checking.
HEALTHCHECK NONE
ENTRYPOINT ["kopf", "run", "-m", "dataflow.k8s.operator"]
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
