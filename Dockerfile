# empfast hub / worker image. Build: docker build -t empfast .
# Run a hub:    docker run -p 8765:8765 -e EMPFAST_REDIS_URL=redis://redis:6379/0 empfast
# Run a worker: docker run -e EMPFAST_URL=ws://hub:8765 empfast worker --concurrency 8
# Without EMPFAST_REDIS_URL the hub runs on the embedded store (one process, not durable).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY empfast ./empfast
COPY lua ./lua
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 empfast
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER empfast
WORKDIR /home/empfast
ENV EMPFAST_HOST=0.0.0.0 \
    EMPFAST_PORT=8765 \
    EMPFAST_JSON_LOGS=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8765 8766
ENTRYPOINT ["empfast"]
CMD ["serve"]
