# CI stand-in for the official Alertmanager image (prom/alertmanager), built
# where no image registry is reachable: Debian's Alertmanager 0.25 on a local
# Debian base (.ci/compose-check.sh passes BASE_IMAGE=localhost/inferd-runtime-base).
# What compose.yaml relies on matches the official image: ENTRYPOINT
# /bin/alertmanager (Debian calls it prometheus-alertmanager), user nobody,
# data in /alertmanager, wget for the healthcheck.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eux; \
    # No service may start during the build (the build runs on the host's network).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager wget; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
    ln -s prometheus-alertmanager /usr/bin/alertmanager; \
    mkdir -p /alertmanager /etc/alertmanager; \
    chown nobody:nogroup /alertmanager; \
    /bin/alertmanager --version
USER nobody
WORKDIR /alertmanager
VOLUME ["/alertmanager"]
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
