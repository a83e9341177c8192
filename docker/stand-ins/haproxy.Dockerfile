# A stand-in for the official haproxy image, for machines without the public registry (the test of
# docker-compose.yml): Debian's haproxy (2.6) on the project's base, reading the official image's
# config path. Built by `docker/build.sh --stand-ins`; not for production.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        haproxy && rm -rf /var/lib/apt/lists/* && mkdir -p /usr/local/etc/haproxy
USER haproxy
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
