# cfai as a container: `cfai serve` on port 8000, for compose.yaml and deploy/kubernetes.yaml
# (docs/shared-gateway.md). Build from the checkout: docker build -t cfai .
#
# Two stages: the first installs cfai and its dependencies into a virtual environment (every dependency ships
# wheels, so no compiler is needed; pip's build isolation fetches setuptools and drops it again); the second copies
# only that environment onto a clean base, so nothing used to build is left in the image.
ARG PYTHON=3.12

FROM python:${PYTHON}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/cfai
COPY pyproject.toml README.md /src/
COPY cfai_cli /src/cfai_cli
RUN /opt/cfai/bin/pip install /src \
    && /opt/cfai/bin/pip uninstall --yes pip

FROM python:${PYTHON}-slim
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without looking the name up.
RUN groupadd --system --gid 10001 cfai \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin cfai \
    && install -d -o cfai -g cfai -m 0700 /data
COPY --from=build /opt/cfai /opt/cfai
# CFAI_HOME holds config.toml (optional: compose.yaml mounts one for [blobs]; the rest has variables) and the
# data directory. With [store] url = "postgresql://…" nothing in it must outlive the container.
ENV PATH=/opt/cfai/bin:$PATH \
    CFAI_HOME=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /data
EXPOSE 8000
# /health answers without a key and without touching Workers AI; urllib, because the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# Off loopback `cfai serve` refuses to start until a key exists (make the first one with
# `docker compose run --rm cfai-a cfai keygen --name admin --scopes admin`, docs/shared-gateway.md).
CMD ["cfai", "serve", "--host", "0.0.0.0", "--port", "8000"]
