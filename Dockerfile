# The facade: one uvicorn worker serving app.main:app. Configure it with environment variables
# (README, "Configuration"); without any it refuses to start and says what to set.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# One install step, every dependency pinned by requirements.lock (used as pip constraints).
COPY pyproject.toml requirements.lock README.md ./
COPY app/ app/
RUN pip install --no-cache-dir -c requirements.lock . \
    && useradd --system --uid 10001 --no-create-home facade

USER 10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]

CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--forwarded-allow-ips", "*", "--no-access-log", "--http", "app.api.middleware.header_limit:HeaderLimitedHttpToolsProtocol"]
