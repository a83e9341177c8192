# A stand-in for the official redis image, for machines without the public registry (the test of
# docker-compose.yml): Debian's redis-server (7.0) on the project's base. Built by
# `docker/build.sh --stand-ins`; not for production, where the official image is the one to use.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        redis-server && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
