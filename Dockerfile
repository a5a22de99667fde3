# The llmsight server image: collector, analyzers, dashboard and `llmsight db migrate`.
#
#   docker build -t llmsight:0.1.0 .
#   docker run --rm llmsight:0.1.0 --help
#
# Not built in this repository's CI: the development machine has no Docker engine. The chart
# (helm/llmsight) and its tests check the manifests that run this image, not the image itself.
#
# torch comes from PyTorch's CPU wheel index. PyPI's torch wheel for Linux is the CUDA build
# (several GB of CUDA libraries the analyzers never use on CPU); installing the CPU build first
# satisfies llmsight's `torch>=2.2` requirement, so pip keeps it when installing the rest.

ARG PYTHON_VERSION=3.11

# -- build: a virtualenv with llmsight[server] -------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.5.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/llmsight
ENV PATH=/opt/llmsight/bin:$PATH
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk ./sdk
COPY store ./store
COPY collector ./collector
COPY analyzers ./analyzers
COPY alerts ./alerts
COPY review ./review
COPY scheduler ./scheduler
COPY dashboard ./dashboard
COPY cli ./cli
COPY demo ./demo
COPY bench ./bench
COPY otlp ./otlp
COPY evaluators ./evaluators
RUN pip install ".[server]" \
    && python -c "import torch; assert not torch.version.cuda, torch.version.cuda"

# -- runtime: the virtualenv, tini and a non-root user -----------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
# tini runs as PID 1 and forwards SIGTERM, so a pod stops at once instead of after its grace period.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 llmsight \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/llmsight --create-home llmsight \
    && mkdir -p /app && chown llmsight:llmsight /app
COPY --from=build /opt/llmsight /opt/llmsight
ENV PATH=/opt/llmsight/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
WORKDIR /app
USER 10001:10001
# collector /metrics /healthz /readyz, analyzers /healthz /readyz, dashboard (Streamlit)
EXPOSE 9464 9465 8501
ENTRYPOINT ["tini", "--", "llmsight"]
CMD ["--help"]
