# empfast hub / worker image. Build: docker/build.sh (or docker build -t empfast .)
# Run a hub:    docker run -p 8765:8765 -p 8766:8766 -e EMPFAST_REDIS_URL=redis://redis:6379/0 empfast
# Run a worker: docker run -e EMPFAST_URL=ws://hub:8765 empfast worker --concurrency 8
# Without EMPFAST_REDIS_URL the hub runs on the embedded store (one process, not durable).
#
# BASE_IMAGE: any image with Python 3.11+ as python3 and its venv module. Where the public registry
# is unreachable, docker/build.sh makes a Debian bookworm base with debootstrap and passes it here.
# Both stages use the same base, so the venv's python3 link is valid in the final one.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# set only when the builder passes them (docker/build.sh passes the host's pip index)
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/empfast
WORKDIR /src
# the dependencies first, in a layer of their own: a change to the code alone reuses it
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/empfast/bin/pip install -r requirements.txt
COPY README.md ./
COPY empfast ./empfast
COPY lua ./lua
# the check runs from / so that it imports the installed package, not the source in /src
RUN /opt/empfast/bin/pip install --no-deps . \
    && cd / && /opt/empfast/bin/python -c "import empfast.scripts, importlib.resources as r; \
assert len(empfast.scripts.load_scripts()) > 1, 'no Lua scripts installed'; \
assert r.files('empfast.hub').joinpath('dashboard', 'index.html').is_file(), 'no dashboard installed'"

# the final stage: the base and the venv, nothing of the build (no wheels, no source, no compiler)
FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 --user-group empfast
COPY --from=build /opt/empfast /opt/empfast
COPY docker/healthcheck.py /opt/empfast/healthcheck.py
USER empfast
WORKDIR /home/empfast
ENV PATH=/opt/empfast/bin:$PATH \
    EMPFAST_HOST=0.0.0.0 \
    EMPFAST_PORT=8765 \
    EMPFAST_HTTP_PORT=8766 \
    EMPFAST_JSON_LOGS=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8765 8766
# the hub's /livez on its HTTP side; slim bases have no curl, so the venv's own Python asks
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/opt/empfast/bin/python", "/opt/empfast/healthcheck.py"]
ENTRYPOINT ["empfast"]
CMD ["serve"]
