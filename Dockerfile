# The gateway image: one image for the API (`gateway serve`) and workers (`gateway worker`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY webhooks ./webhooks
COPY providers ./providers
RUN pip install --no-cache-dir . && useradd --system gateway
USER gateway
ENV GATEWAY_HOST=0.0.0.0 GATEWAY_LOG_FORMAT=json
EXPOSE 8080
CMD ["gateway", "serve"]
