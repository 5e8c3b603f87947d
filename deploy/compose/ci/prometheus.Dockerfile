# CI stand-in for the official Prometheus image (prom/prometheus), built where
# no image registry is reachable: Debian's Prometheus 2.42 on a local Debian
# base (.ci/compose-check.sh passes BASE_IMAGE=localhost/inferd-runtime-base).
# What compose.yaml relies on matches the official image: ENTRYPOINT
# /bin/prometheus, user nobody, data in /prometheus, wget for the healthcheck.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eux; \
    # No service may start during the build (the build runs on the host's network).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    mkdir -p /prometheus /etc/prometheus; \
    chown nobody:nogroup /prometheus; \
    /bin/prometheus --version
USER nobody
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
