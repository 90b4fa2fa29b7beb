FROM python:3.11-slim
WORKDIR /app
# The CJK fonts: `sct report` draws its charts in Chinese (ui.language zh).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
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
