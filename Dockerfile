FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY devices ./devices
COPY dashboards ./dashboards
COPY simulators ./simulators
COPY security ./security
RUN pip install --no-cache-dir . && useradd --system --uid 10001 --home-dir /data sct \
    && mkdir -p /data && chown sct /data
USER sct
ENTRYPOINT ["sct"]
