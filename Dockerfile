# The gateway image: one image for the API (`gateway serve`), workers (`gateway worker`) and
# the standalone sandbox processor (`gateway sandbox`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY webhooks ./webhooks
COPY providers ./providers
COPY gateway_client ./gateway_client
# The data dir belongs to the service's user, so a named volume mounted there (the sandbox's
# state) starts out writable by it.
RUN pip install --no-cache-dir . && useradd --system gateway \
    && mkdir -p /var/lib/gateway && chown gateway /var/lib/gateway
USER gateway
ENV GATEWAY_HOST=0.0.0.0 GATEWAY_LOG_FORMAT=json GATEWAY_DATA_DIR=/var/lib/gateway
EXPOSE 8080 8081 8082
CMD ["gateway", "serve"]
