# syntax=docker/dockerfile:1
# The project image: the code location (a gRPC code server, which also runs each Dagster run as a
# subprocess), the webserver, the daemon and the `cryptobt` CLI. docker-compose.yml builds it once.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CRYPTOBT_HOME=/var/lib/cryptobt \
    DAGSTER_HOME=/opt/dagster/home \
    NUMBA_CACHE_DIR=/var/lib/cryptobt/numba-cache

RUN groupadd --system --gid 10001 cryptobt \
 && useradd --system --uid 10001 --gid cryptobt --home-dir /var/lib/cryptobt --no-create-home \
      --shell /usr/sbin/nologin cryptobt

WORKDIR /opt/cryptobt
# The package finds sql/ and assets/ beside itself (settings.PROJECT_ROOT): an editable install keeps the
# tree as it is in the repository.
COPY pyproject.toml README.md ./
COPY cryptobt_pipelines/ cryptobt_pipelines/
COPY sql/ sql/
COPY assets/ assets/
# Installed, then the backtest kernel compiled into numba's on-disk cache (NUMBA_CACHE_DIR): run processes load it instead
# of compiling it (15 s and more), Kubernetes run pods included; compose's named volume starts as a copy of it.
# numba keys its cache by CPU: on a host whose CPU differs from the build machine's, the first run compiles.
RUN pip install --no-cache-dir -e . \
 && python -c "from cryptobt_pipelines.backtests import warm_engine_cache; warm_engine_cache()"

COPY deploy/compose/workspace.yaml deploy/compose/workspace.yaml
COPY dagster.yaml /opt/dagster/home/dagster.yaml
# Named volumes mounted on these start as copies of them, owned by the service user.
RUN mkdir -p /var/lib/cryptobt/landing /var/lib/cryptobt/numba-cache /opt/dagster/home/storage \
 && chown -R cryptobt:cryptobt /var/lib/cryptobt /opt/dagster/home

# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "cryptobt_pipelines.definitions", "--location-name", "cryptobt_pipelines"]
