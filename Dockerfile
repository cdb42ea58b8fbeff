# interlace-mcp over streamable HTTP (http://<host>:8765/mcp, /healthz, /dashboard).
#   docker build -t interlace-mcp .
#   docker run --rm -p 127.0.0.1:8765:8765 -v interlace-state:/data interlace-mcp
#   docker exec <container> interlace-mcp agents token NAME     # bearer token for an agent
# With no credentials it runs on the embedded sandbox (no real money). compose.yaml adds PostgreSQL.
# tests/e2e/test_install.py runs this file's RUN and CMD steps (paths mapped to a temporary directory).

# ---- build: the wheel, from the project's own files only ---------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime: the wheel in a venv, no source, no build tools, not root ---------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/interlace-mcp/bin:$PATH \
    INTERLACE_STATE_DIR=/data \
    INTERLACE_LOG_FORMAT=json \
    INTERLACE_ALLOWED_HOSTS=interlace-mcp:8765
# INTERLACE_ALLOWED_HOSTS: Host names (besides loopback) the DNS-rebinding check accepts: the compose
# service name here; set your public host:port when you publish it (behind TLS).
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home --shell /usr/sbin/nologin interlace
COPY --from=build /wheels /wheels
RUN python -m venv /opt/interlace-mcp \
    && /opt/interlace-mcp/bin/pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels
USER interlace
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["interlace-mcp"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8765"]
