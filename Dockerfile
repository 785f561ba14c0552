# predgate gateway image: the same code as the embedded default, configured by PREDGATE_*.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PREDGATE_DATA_DIR=/var/lib/predgate
WORKDIR /app
# LightGBM links the system's OpenMP runtime, which the slim image leaves out.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY auth auth
COPY models models
COPY audit audit
COPY config config
COPY db db
COPY ratelimit ratelimit
COPY migrations migrations
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/predgate predgate \
    && mkdir -p /var/lib/predgate && chown predgate /var/lib/predgate
USER predgate
EXPOSE 8000
CMD ["predgate", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
