#!/usr/bin/env bash
# End-to-end check of the container image, without Docker daemon or registry:
#   1. build local base images (.ci/container-bases.sh, cached/idempotent)
#   2. podman build the Dockerfile against them -> inferd:ci
#   3. check runtime image size (<= INFERD_MAX_IMAGE_MB, default 150 MB)
#   4. run it, wait for /health/ready, POST the first fixture case of
#      models/breast_cancer/1/fixtures.json to /predict and compare
#   5. check non-root user and the recorded HEALTHCHECK
# The container is always stopped/removed (trap). Exits non-zero on failure.
#
# Knobs: INFERD_IMAGE_TAG (inferd:ci), INFERD_MAX_IMAGE_MB (150),
#        INFERD_READY_TIMEOUT (60), INFERD_FIXTURES (models/breast_cancer/1/fixtures.json),
#        INFERD_PREDICT_PATH (/predict; e.g. /models/breast_cancer/predict)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"

IMAGE_TAG="${INFERD_IMAGE_TAG:-inferd:ci}"
MAX_MB="${INFERD_MAX_IMAGE_MB:-150}"
READY_TIMEOUT="${INFERD_READY_TIMEOUT:-60}"
FIXTURES="${INFERD_FIXTURES:-models/breast_cancer/1/fixtures.json}"
PREDICT_PATH="${INFERD_PREDICT_PATH:-/predict}"

log() { printf '[container-check] %s\n' "$*" >&2; }
fail() { printf '[container-check] FAIL: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ bases
t_start=$(date +%s)
# shellcheck source=.ci/container-bases.sh
source "$script_dir/container-bases.sh"     # sets CONTAINERS_CONF and PODMAN=(podman --runtime runc)
t_bases=$(date +%s)
log "base images ready in $((t_bases - t_start)) s"

command -v python3 >/dev/null || fail "python3 is required"
command -v curl >/dev/null || fail "curl is required"
[ -f "$FIXTURES" ] || fail "fixtures not found: $FIXTURES"
[ -f config.toml ] || fail "config.toml not found in $repo_root (the image bakes it in)"
[ -d models ] || fail "models/ not found in $repo_root (the image bakes it in)"

# ------------------------------------------------------------------ build
log "building $IMAGE_TAG"
"${PODMAN[@]}" build --format docker --network=host \
    --build-arg BUILDER_IMAGE=localhost/inferd-rust-builder \
    --build-arg RUNTIME_IMAGE=localhost/inferd-runtime-base \
    -t "$IMAGE_TAG" . || fail "podman build failed"
t_build=$(date +%s)
build_s=$((t_build - t_bases))
log "build time: ${build_s} s"

# ------------------------------------------------------------------ size
size_bytes=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE_TAG")
size_mb=$(python3 -c "print(f'{$size_bytes/1e6:.1f}')")
log "runtime image size: ${size_mb} MB (${size_bytes} bytes; limit ${MAX_MB} MB)"
python3 -c "import sys; sys.exit(0 if $size_bytes <= $MAX_MB*1000*1000 else 1)" \
    || fail "image $IMAGE_TAG is ${size_mb} MB > ${MAX_MB} MB"

# ------------------------------------------------------------------ image config
img_user=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$IMAGE_TAG")
log "image USER: '${img_user}'"
case "$img_user" in
    ""|0|root|0:*|root:*) fail "image runs as root (USER='${img_user}')" ;;
esac
# podman's inspect shows the docker-format HEALTHCHECK both at top level and
# under Config depending on version; accept either.
img_json=$("${PODMAN[@]}" image inspect "$IMAGE_TAG")
hc=$(python3 -c '
import json, sys
d = json.load(sys.stdin)[0]
hc = d.get("HealthCheck") or d.get("Healthcheck") or (d.get("Config") or {}).get("Healthcheck") or {}
print(json.dumps(hc))' <<<"$img_json")
log "image HEALTHCHECK: $hc"
python3 -c '
import json, sys
hc = json.loads(sys.argv[1])
t = hc.get("Test") or []
sys.exit(0 if len(t) >= 2 and t[0] in ("CMD", "CMD-SHELL") and "healthcheck" in " ".join(t[1:]) else 1)' "$hc" \
    || fail "HEALTHCHECK (inferd healthcheck) not recorded in the image config"

# ------------------------------------------------------------------ run
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
cname="inferd-ci-$$"
cid=""
cleanup() {
    local rc=$?
    if [ -n "$cid" ]; then
        if [ "$rc" -ne 0 ]; then
            log "container logs (last 50 lines):"
            sleep 1   # let conmon flush the log of a container that just exited
            "${PODMAN[@]}" logs "$cid" 2>&1 | tail -n 50 >&2 || true
        fi
        "${PODMAN[@]}" stop -t 5 "$cid" >/dev/null 2>&1 || true
        "${PODMAN[@]}" rm -f "$cid" >/dev/null 2>&1 || true
        log "container $cname removed"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting $cname on port $port"
# podman drives HEALTHCHECK intervals with systemd timers, and CI sandboxes
# have no systemd: disable the timer (the image's HEALTHCHECK stays attached)
# and run the check explicitly below with `podman healthcheck run`.
cid=$("${PODMAN[@]}" run -d --name "$cname" --network=host \
        --health-interval=disable \
        -e INFERD_SERVER__PORT="$port" "$IMAGE_TAG" \
        2> >(grep -v 'systemd connection' >&2)) || fail "podman run failed"

base="http://127.0.0.1:$port"
deadline=$(( $(date +%s) + READY_TIMEOUT ))
t_run=$(date +%s)
while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/health/ready" || true)
    [ "$code" = 200 ] && break
    state=$("${PODMAN[@]}" inspect --format '{{.State.Status}}' "$cid" 2>/dev/null || echo gone)
    [ "$state" = running ] || fail "container is not running (state: $state)"
    [ "$(date +%s)" -lt "$deadline" ] || fail "/health/ready not 200 after ${READY_TIMEOUT} s (last: $code)"
    sleep 1
done
log "ready after $(( $(date +%s) - t_run )) s"

# non-root at run time
uid=$("${PODMAN[@]}" exec "$cid" id -u 2>/dev/null || true)
if [ -z "$uid" ]; then   # image without coreutils `id`: fall back to /proc
    uid=$("${PODMAN[@]}" top "$cid" huser 2>/dev/null | awk 'NR == 2 {print $1}')
fi
log "process uid in container: ${uid:-?}"
[ -n "$uid" ] && [ "$uid" != 0 ] && [ "$uid" != root ] || fail "container runs as root (uid '${uid}')"

# HEALTHCHECK command works inside the container
if "${PODMAN[@]}" healthcheck run "$cid" >/dev/null 2>&1; then
    log "podman healthcheck run: healthy"
else
    "${PODMAN[@]}" exec "$cid" inferd healthcheck \
        || fail "'inferd healthcheck' failed inside the container"
    log "inferd healthcheck (exec): ok"
fi

# /predict against the first fixture case
req=$(python3 -c '
import json, sys
fx = json.load(open(sys.argv[1]))
print(json.dumps({"instances": [fx["cases"][0]["input"]]}))' "$FIXTURES")
resp_file=$(mktemp)
code=$(curl -s -o "$resp_file" -w '%{http_code}' --max-time 30 \
        -H 'content-type: application/json' --data-binary "$req" "$base$PREDICT_PATH" || true)
resp=$(cat "$resp_file"); rm -f "$resp_file"
[ "$code" = 200 ] || fail "$PREDICT_PATH returned HTTP $code: $resp"
python3 - "$FIXTURES" "$resp" <<'PY' || fail "$PREDICT_PATH answer does not match the fixture"
import json, math, sys
fx = json.load(open(sys.argv[1]))
tol = float(fx.get("tolerance", 1e-5))
want = fx["cases"][0]["output"]
try:
    got = json.loads(sys.argv[2])["predictions"][0]
except Exception as e:
    sys.exit(f"bad answer shape ({e}): {sys.argv[2][:500]}")
errs = []
if got.get("label") != want["label"]:
    errs.append(f"label {got.get('label')!r} != {want['label']!r}")
gp = got.get("probabilities") or {}
for k, p in want["probabilities"].items():
    if k not in gp:
        errs.append(f"probability for {k!r} missing")
    elif not math.isfinite(gp[k]) or abs(gp[k] - p) > tol:
        errs.append(f"probability[{k!r}] {gp[k]} vs {p} (tol {tol})")
if errs:
    sys.exit("; ".join(errs))
print(f"[container-check] /predict ok: label={got['label']!r} probabilities={gp}", file=sys.stderr)
PY

t_end=$(date +%s)
log "SUMMARY: bases $((t_bases - t_start)) s, build ${build_s} s, image ${size_mb} MB, total $((t_end - t_start)) s"
log "OK"
