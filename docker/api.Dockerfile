# HCP Concierge api: FastAPI app, web chat page, consoles, channel webhooks, Rasa action endpoint.
# Build from the repository root:  docker build -f docker/api.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app

# torch first, CPU-only build: any other spec pulls gigabytes of CUDA wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Dependencies before sources, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
COPY requirements/app.lock requirements/app.lock
COPY api api
COPY knowledge knowledge
COPY feedback feedback

# Editable install: the package root stays /app, so default paths (var/, knowledge/content)
# resolve inside the image exactly as in a checkout.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c requirements/app.lock -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin concierge \
    && mkdir -p /app/var \
    && chown -R concierge:concierge /app/var

USER concierge

# /app is read-only for the service user: runtime files and library caches go under var/.
ENV CONCIERGE_HOST=0.0.0.0 \
    CONCIERGE_PORT=8000 \
    CONCIERGE_VAR_DIR=/app/var \
    XDG_CACHE_HOME=/app/var/cache \
    HF_HOME=/app/var/cache/huggingface

EXPOSE 8000
VOLUME ["/app/var"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["concierge", "serve"]
