# CI stand-in for the official nginx image (nginx:1.27), built where no image
# registry is reachable: Debian's nginx on a local Debian base
# (.ci/compose-check.sh passes BASE_IMAGE=localhost/inferd-runtime-base).
# What compose.yaml relies on matches the official image: ENTRYPOINT
# /docker-entrypoint.sh running its arguments, `nginx` on PATH, curl for the
# healthcheck, logs to stdout/stderr, SIGQUIT as the stop signal.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eux; \
    # No service may start during the build (the build runs on the host's network).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx curl; \
    rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/nginx/sites-enabled/default; \
    ln -sf /dev/stdout /var/log/nginx/access.log; \
    ln -sf /dev/stderr /var/log/nginx/error.log; \
    printf '#!/bin/sh\n# Stand-in for the official image'"'"'s entrypoint: run the command.\nexec "$@"\n' \
        > /docker-entrypoint.sh; \
    chmod +x /docker-entrypoint.sh; \
    nginx -v
ENTRYPOINT ["/docker-entrypoint.sh"]
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
