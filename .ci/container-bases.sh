#!/usr/bin/env bash
# Build the two LOCAL base images the container check needs, without any
# image registry and without a Docker daemon:
#
#   localhost/inferd-runtime-base   debootstrap minbase bookworm, slimmed like
#                                   debian:bookworm-slim
#   localhost/inferd-rust-builder   debootstrap minbase bookworm + gcc, libc6-dev,
#                                   pkg-config, ca-certificates, the host's CA
#                                   bundle and the host's stable Rust toolchain
#
# Idempotent: installs podman/runc/debootstrap when missing, and only builds an
# image when it is absent (set INFERD_REBUILD_BASES=1 to force a rebuild).
#
# Can be executed or sourced.  When sourced it leaves CONTAINERS_CONF and
# PODMAN (array: podman --runtime runc) set for the caller.
#
# Knobs (environment):
#   INFERD_CI_CACHE        scratch/cache dir  (default: <clone>/.ci/.cache)
#   INFERD_DEBIAN_MIRROR   Debian mirror      (default: from /etc/apt sources)
#   INFERD_RUST_TOOLCHAIN  toolchain dir to copy
#                          (default: $RUSTUP_HOME|~/.rustup/toolchains/stable-<host>)
#   INFERD_REBUILD_BASES=1 rebuild both images even when present

# Strict mode only when executed; when sourced, don't change the caller's shell
# options permanently (we restore them at the end).
_inferd_bases_sourced=0
(return 0 2>/dev/null) && _inferd_bases_sourced=1
_inferd_bases_oldopts=$(set +o)
set -euo pipefail

_bases_main() {
    local script_dir repo_root
    script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    repo_root=$(cd "$script_dir/.." && pwd)

    local cache="${INFERD_CI_CACHE:-$repo_root/.ci/.cache}"
    mkdir -p "$cache"
    cache=$(cd "$cache" && pwd)

    local SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

    _cb_log() { printf '[container-bases] %s\n' "$*" >&2; }
    _cb_die() { printf '[container-bases] ERROR: %s\n' "$*" >&2; return 1; }

    # ---------------------------------------------------------------- tools
    local missing=()
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        _cb_log "installing: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi

    # ------------------------------------------------------ containers.conf
    # The default ulimits (nofile etc.) cannot be applied inside this kind of
    # sandbox; an empty list makes `podman run`/`podman build` work.
    local conf="$cache/containers.conf"
    printf '[containers]\ndefault_ulimits = []\n' > "$conf.tmp"
    mv -f "$conf.tmp" "$conf"
    export CONTAINERS_CONF="$conf"
    PODMAN=(podman --runtime runc)

    # ---------------------------------------------------------------- mirror
    local mirror="${INFERD_DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ]; then
        # First "URIs:" (deb822) or "deb URL" line whose path ends in /debian.
        mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
                   | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
                   | grep -E '/debian/?$' | head -n1 || true)
        if [ -z "$mirror" ]; then
            mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                       | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
                       | grep -E '/debian/?$' | head -n1 || true)
        fi
        mirror="${mirror:-http://deb.debian.org/debian}"
    fi
    _cb_log "Debian mirror: $mirror"

    local debs="$cache/debs"   # debootstrap .deb cache, reused across runs
    mkdir -p "$debs"

    _cb_image_exists() { "${PODMAN[@]}" image exists "$1"; }

    # Shared rootfs slimming (what debian:bookworm-slim does via dpkg excludes).
    _cb_slim_rootfs() {
        local root="$1"
        mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
        cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Like debian:*-slim: don't install docs, man pages, locales.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
        cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        printf 'Acquire::Languages "none";\n' > "$root/etc/apt/apt.conf.d/docker-no-languages"
        printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
            > "$root/etc/apt/apt.conf.d/docker-no-recommends"
        # deb822 sources pointing at the same mirror (apt inside the image).
        rm -f "$root/etc/apt/sources.list"
        cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
        find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
        rm -rf "$root"/usr/share/man/* "$root"/usr/share/groff/* "$root"/usr/share/info/* \
               "$root"/usr/share/lintian/* "$root"/usr/share/linda/*
        find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
            -exec rm -rf {} + 2>/dev/null || true
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
               "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/archives/partial/* \
               "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
               "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
        : > "$root/etc/machine-id" 2>/dev/null || true
        rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
    }

    _cb_bootstrap() {  # _cb_bootstrap ROOTDIR [extra debootstrap args...]
        local root="$1"; shift
        $SUDO rm -rf "$root"
        mkdir -p "$root"
        _cb_log "debootstrap into $root $*"
        if ! $SUDO debootstrap --variant=minbase --cache-dir="$debs" "$@" \
                bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1; then
            tail -n 30 "$root.debootstrap.log" >&2
            [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
            _cb_die "debootstrap failed (log: $root.debootstrap.log)"
        fi
    }

    _cb_import_rootfs() {  # _cb_import_rootfs ROOTDIR IMAGE [--change ...]
        local root="$1" image="$2"; shift 2
        $SUDO tar --numeric-owner -C "$root" -c . \
            | "${PODMAN[@]}" import --quiet "$@" - "$image" >/dev/null
        $SUDO rm -rf "$root"
    }

    local t0 t1
    # ------------------------------------------------------------- runtime base
    local rt_img=localhost/inferd-runtime-base
    if [ "${INFERD_REBUILD_BASES:-0}" != 1 ] && _cb_image_exists "$rt_img"; then
        _cb_log "$rt_img present, skipping"
    else
        t0=$(date +%s)
        local rt_root="$cache/rootfs-runtime"
        _cb_bootstrap "$rt_root"
        _cb_slim_rootfs "$rt_root"
        _cb_import_rootfs "$rt_root" "$rt_img" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]'
        t1=$(date +%s)
        _cb_log "built $rt_img in $((t1 - t0)) s"
    fi

    # ------------------------------------------------------------- rust builder
    local rb_img=localhost/inferd-rust-builder
    if [ "${INFERD_REBUILD_BASES:-0}" != 1 ] && _cb_image_exists "$rb_img"; then
        _cb_log "$rb_img present, skipping"
    else
        t0=$(date +%s)
        local rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
        local host_triple=x86_64-unknown-linux-gnu
        local tc="${INFERD_RUST_TOOLCHAIN:-$rustup_home/toolchains/stable-$host_triple}"
        if [ ! -x "$tc/bin/cargo" ] || [ ! -x "$tc/bin/rustc" ]; then
            _cb_die "no Rust toolchain at $tc (set INFERD_RUST_TOOLCHAIN)"
        fi
        tc=$(cd "$tc" && pwd -P)
        _cb_log "Rust toolchain: $tc ($("$tc/bin/rustc" --version))"

        local rb_root="$cache/rootfs-builder"
        _cb_bootstrap "$rb_root" --include=gcc,libc6-dev,pkg-config,ca-certificates,make
        _cb_slim_rootfs "$rb_root"

        # Host CA bundle (may contain a TLS-intercepting proxy's CA that cargo
        # needs to reach crates.io from `podman build --network=host`).
        local ca_host=/etc/ssl/certs/ca-certificates.crt
        if [ -s "$ca_host" ]; then
            install -D -m 0644 "$ca_host" "$rb_root/usr/local/share/inferd-ci/host-ca-bundle.crt"
            install -m 0644 "$ca_host" "$rb_root/etc/ssl/certs/ca-certificates.crt"
        fi

        # Toolchain without the docs (~800 MB) and without rust-src if present.
        mkdir -p "$rb_root/usr/local/rust" "$rb_root/usr/local/cargo/bin"
        tar -C "$tc" --exclude=./share/doc --exclude=./lib/rustlib/src \
            --exclude=./lib/rustlib/rustc-src --exclude=./share/man -c . \
            | tar -C "$rb_root/usr/local/rust" -x
        local b
        for b in "$rb_root"/usr/local/rust/bin/*; do
            ln -sf "../../rust/bin/$(basename "$b")" "$rb_root/usr/local/cargo/bin/$(basename "$b")"
        done
        mkdir -p "$rb_root/usr/local/rustup"

        _cb_import_rootfs "$rb_root" "$rb_img" \
            --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV CARGO_HOME=/usr/local/cargo' \
            --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
            --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
            --change 'ENV CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt' \
            --change 'ENV CARGO_NET_GIT_FETCH_WITH_CLI=false' \
            --change 'CMD ["bash"]'
        "${PODMAN[@]}" run --rm --network=host "$rb_img" sh -c 'cargo --version && rustc --version && cc --version | head -n1' >&2 \
            || _cb_die "$rb_img: toolchain does not run"
        t1=$(date +%s)
        _cb_log "built $rb_img in $((t1 - t0)) s"
    fi

    "${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
        | grep -E 'inferd-(runtime-base|rust-builder)' >&2 || true
}

# NB: called directly (not in an `||` list) so that `set -e` stays effective
# inside the function.  When sourced, a failure therefore exits the caller
# (which is what a CI script wants).
_bases_main "$@"

if [ "$_inferd_bases_sourced" = 1 ]; then
    eval "$_inferd_bases_oldopts"
    unset _inferd_bases_oldopts _inferd_bases_sourced
fi
