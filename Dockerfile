# One image for web, worker, beat and migrations (docs/deploy.md).
# Pinned: the base by tag and by the digest of its multi-architecture index, uv by version.
FROM ghcr.io/astral-sh/uv:0.13.10 AS uv

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
COPY --from=uv /uv /uvx /bin/

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH="/app/.venv/bin:$PATH"

RUN groupadd --system --gid 10001 callwatch \
 && useradd --system --uid 10001 --gid callwatch --home-dir /app --no-create-home \
    --shell /usr/sbin/nologin callwatch
WORKDIR /app

# Dependencies from the lock alone, before any source: a code change rebuilds only what follows.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY README.md ./
COPY workers ./workers
COPY src ./src
# The data directory (beat's schedule; `up`'s files) belongs to the user the processes run as.
RUN uv sync --frozen --no-dev \
 && mkdir /app/.callwatch \
 && chown callwatch:callwatch /app/.callwatch

USER callwatch
EXPOSE 8000
# Ready means the database and Redis answer, not just the process (GET /readyz). Worker and beat
# containers of this image serve no HTTP: compose turns this check off for them.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["callwatch", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
