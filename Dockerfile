# inferd container image.
#
#   docker build -t inferd .
#   docker run --rm -p 8080:8080 inferd
#
# BUILDER_IMAGE / RUNTIME_IMAGE default to the official images so the file
# builds anywhere; CI overrides them with locally built equivalents
# (see .ci/container-bases.sh and .ci/container-check.sh).
ARG BUILDER_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------
# context: the whole build context (filtered by .dockerignore) plus a
# "skeleton" of it: every Cargo manifest/lockfile and .cargo/ config, and every
# .rs file replaced by a stub. The skeleton only changes when the manifests
# change, so the dependency build below stays cached across source edits.
FROM ${BUILDER_IMAGE} AS context
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir -p /skeleton; \
    find . -path ./target -prune -o -type f \
        \( -name Cargo.toml -o -name Cargo.lock -o -path './.cargo/*' \) -print \
        | while IFS= read -r f; do \
            mkdir -p "/skeleton/$(dirname "$f")"; cp "$f" "/skeleton/$f"; \
          done; \
    find . -path ./target -prune -o -type f -name '*.rs' -print \
        | while IFS= read -r f; do \
            mkdir -p "/skeleton/$(dirname "$f")"; echo 'fn main() {}' > "/skeleton/$f"; \
          done; \
    find /skeleton -exec touch -h -d @0 {} +

# ---------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS builder
WORKDIR /build
# 1) dependencies only (cached layer while Cargo.toml/Cargo.lock are unchanged)
COPY --from=context /skeleton/ ./
RUN cargo build --release --locked
# 2) the real sources. COPY keeps the context's mtimes, which can be older than
#    the stub build, so touch them to make cargo rebuild the crate's own code.
COPY --from=context /src/ ./
RUN set -eu; \
    find . -path ./target -prune -o -type f -name '*.rs' -exec touch {} +; \
    cargo build --release --locked; \
    install -D -m 0755 target/release/inferd /out/inferd

# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --gid 10001 inferd \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /srv/inferd \
        --no-create-home --shell /usr/sbin/nologin inferd
COPY --from=builder /out/inferd /usr/local/bin/inferd
WORKDIR /srv/inferd
# Models and configuration are baked in, owned by root and read-only for the
# service user.
COPY models/ ./models/
COPY config.toml ./config.toml
ENV INFERD_SERVER__ADDR=0.0.0.0 \
    INFERD_SERVER__PORT=8080
EXPOSE 8080
# `inferd healthcheck` GETs http://127.0.0.1:$INFERD_SERVER__PORT/health/ready
# and exits 0 on 200, 1 otherwise (no curl in the image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["inferd", "healthcheck"]
USER 10001
ENTRYPOINT ["inferd"]
CMD ["serve", "--config", "/srv/inferd/config.toml"]
