#!/usr/bin/env bash
# End-to-end check of deploy/compose/compose.yaml with podman and podman-compose, on loopback, without Docker
# daemon or image registry:
#   1. local base images (.ci/container-bases.sh) and the inferd image: `inferd:ci`, as .ci/container-check.sh
#      builds it (reused when present: in CI that check runs just before this one; built by it otherwise)
#   2. stand-ins for the official nginx, Prometheus and Alertmanager images, from Debian's packages on the local
#      base (deploy/compose/ci/*.Dockerfile; same ENTRYPOINT as the official images, so compose.yaml's
#      `command:`s work with either)
#   3. podman-compose (pinned, in a venv under .ci/work/) validates the file, then `up -d` brings up the default
#      services: three inferd replicas, nginx, Prometheus, Alertmanager
#   4. every service ready, every container's compose healthcheck passes (`podman healthcheck run`); one
#      prediction through nginx equals the fixture; a few hundred more (the model's test split, in-distribution)
#      reach all three replicas; Prometheus
#      records the fleet PSI `inferd:feature_drift_psi:fleet{model="breast_cancer"}` (a few values printed);
#      Alertmanager ready and active in Prometheus; every rule healthy; the dashboard's queries valid; then
#      inferd-3 stopped (exits 0 after its shutdown delay) and nginx answers every prediction from the other two
#   5. `down -v`, always (trap), and nothing of the project left behind
#
# Grafana is NOT run here: no Grafana image can be built or pulled on this machine (not packaged in Debian, no
# registry). It sits under the compose profile `dashboards`, which this check leaves off; instead the Grafana
# provisioning files are validated (YAML/JSON parse, the data source uid every panel uses is provisioned, paths
# and URL match compose.yaml) and every dashboard query is run against the live Prometheus.
#
# Needs the loopback ports 8080-8083, 9090 and 9093 free (host networking, as compose.yaml documents).
# Knobs: INFERD_IMAGE (default localhost/inferd:ci, built when absent), INFERD_COMPOSE_PROJECT (inferd-compose-ci),
#        INFERD_COMPOSE_TIMEOUT (180: bound on the readiness and on the live checks, seconds each),
#        INFERD_COMPOSE_REQUESTS (300), PODMAN_COMPOSE_VERSION (1.6.0)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"

PROJECT="${INFERD_COMPOSE_PROJECT:-inferd-compose-ci}"
TIMEOUT="${INFERD_COMPOSE_TIMEOUT:-180}"
REQUESTS="${INFERD_COMPOSE_REQUESTS:-300}"
PODMAN_COMPOSE_VERSION="${PODMAN_COMPOSE_VERSION:-1.6.0}"
COMPOSE_FILE=deploy/compose/compose.yaml
FIXTURES=models/breast_cancer/1/fixtures.json
WORK=.ci/work/compose
VENV=.ci/work/compose-venv

log() { printf '[compose-check] %s\n' "$*" >&2; }
fail() { printf '[compose-check] FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
# podman without systemd (CI sandboxes) cannot arm healthcheck timers and says so on every container
# operation; the healthchecks themselves are run explicitly below.
quiet_systemd() { grep -v -e 'systemd connection' -e 'Removing timer for container' >&2 || true; }

t_start=$(now)
mkdir -p "$WORK"

# ------------------------------------------------------------------ podman and images
# shellcheck source=.ci/container-bases.sh
source "$script_dir/container-bases.sh"   # podman, runc, base images; CONTAINERS_CONF, PODMAN=(podman --runtime runc)
# podman-compose calls plain `podman`: put the runtime in containers.conf rather than on the command line.
printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > "$WORK/containers.conf"
export CONTAINERS_CONF="$PWD/$WORK/containers.conf"

command -v python3 >/dev/null || fail "python3 is required"
command -v curl >/dev/null || fail "curl is required"

if [ -n "${INFERD_IMAGE:-}" ]; then
    podman image exists "$INFERD_IMAGE" || fail "INFERD_IMAGE=$INFERD_IMAGE does not exist"
else
    INFERD_IMAGE=localhost/inferd:ci
    if podman image exists "$INFERD_IMAGE"; then
        log "reusing $INFERD_IMAGE (built $(podman image inspect --format '{{.Created}}' "$INFERD_IMAGE"))"
    else
        log "$INFERD_IMAGE absent: building and checking it with .ci/container-check.sh"
        bash "$script_dir/container-check.sh"
    fi
fi
t_inferd=$(now)

for service in nginx prometheus alertmanager; do
    log "building the $service stand-in (localhost/inferd-ci-$service)"
    podman build --quiet --network=host --build-arg BASE_IMAGE=localhost/inferd-runtime-base \
        -f "deploy/compose/ci/$service.Dockerfile" -t "localhost/inferd-ci-$service" deploy/compose/ci \
        >"$WORK/build-$service.log" 2>&1 || { tail -n 30 "$WORK/build-$service.log" >&2; fail "building the $service stand-in"; }
done
export INFERD_IMAGE NGINX_IMAGE=localhost/inferd-ci-nginx PROMETHEUS_IMAGE=localhost/inferd-ci-prometheus \
    ALERTMANAGER_IMAGE=localhost/inferd-ci-alertmanager
t_images=$(now)

# ------------------------------------------------------------------ podman-compose
if [ "$("$VENV/bin/podman-compose" --version 2>/dev/null | awk '/podman-compose version/ {print $NF}')" != "$PODMAN_COMPOSE_VERSION" ]; then
    log "installing podman-compose $PODMAN_COMPOSE_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
compose() {  # compose SECONDS ARGS...: podman-compose on this project, bounded
    local seconds="$1"; shift
    timeout "$seconds" "$VENV/bin/podman-compose" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}
"$VENV/bin/python" deploy/compose/ci/check_stack.py grafana

compose 30 config >"$WORK/config.yaml" 2> >(quiet_systemd) || fail "podman-compose config"
compose 30 --profile dashboards config >"$WORK/config-dashboards.yaml" 2> >(quiet_systemd) \
    || fail "podman-compose --profile dashboards config"
"$VENV/bin/python" - "$WORK/config.yaml" "$WORK/config-dashboards.yaml" <<'PY' || fail "compose config"
import sys, yaml
default, dashboards = (yaml.safe_load(open(path))["services"] for path in sys.argv[1:])
want = {"inferd-1", "inferd-2", "inferd-3", "nginx", "prometheus", "alertmanager"}
assert set(default) == want, f"default services {sorted(default)}"
assert set(dashboards) == want | {"grafana"}, f"--profile dashboards services {sorted(dashboards)}"
ports = sorted(s["environment"]["INFERD_SERVER__PORT"] for name, s in default.items() if name.startswith("inferd"))
assert ports == ["8081", "8082", "8083"], ports
print(f"[compose-check] compose config: {sorted(default)}; grafana only with --profile dashboards", file=sys.stderr)
PY

# ------------------------------------------------------------------ bring-up, with teardown on every exit
python3 - <<'PY' || fail "loopback ports in use: another stack or service holds them (compose.yaml uses host networking)"
import socket, sys
busy = []
for port in (8080, 8081, 8082, 8083, 9090, 9093):
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            busy.append(port)
if busy:
    sys.exit(f"[compose-check] busy: {busy}")
PY

project_containers() { podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT"; }
torn_down=0
teardown() {
    [ "$torn_down" = 1 ] && return 0
    torn_down=1
    local t0; t0=$(now)
    compose 120 down -v >"$WORK/down.log" 2>&1 || { log "podman-compose down failed:"; quiet_systemd <"$WORK/down.log"; }
    # Whatever a failed `down` left: the project's containers, pod and volumes.
    local left; left=$(project_containers)
    if [ -n "$left" ]; then
        log "removing leftover containers: $left"
        # shellcheck disable=SC2086
        podman rm -f -t 5 $left >/dev/null 2>&1 || true
    fi
    podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1 || true
    podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
    [ -z "$(project_containers)" ] || { log "containers of $PROJECT still present"; return 1; }
    t_down=$(( $(now) - t0 ))
    log "torn down in ${t_down} s; no container of $PROJECT left"
}
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        for c in $(project_containers); do
            log "--- logs of $(podman inspect --format '{{.Name}}' "$c" 2>/dev/null) ($(podman inspect --format '{{.State.Status}}' "$c" 2>/dev/null)), last 20 lines:"
            podman logs --tail 20 "$c" 2>&1 | sed 's/^/    /' >&2 || true
        done
    fi
    teardown || rc=1
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

t_up0=$(now)
log "podman-compose up -d ($PROJECT: inferd $INFERD_IMAGE, nginx, Prometheus, Alertmanager; Grafana left off)"
compose 180 up -d >"$WORK/up.log" 2>&1 || { quiet_systemd <"$WORK/up.log"; fail "podman-compose up"; }
podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '  {{.Names}}  {{.Image}}  {{.Status}}' >&2
t_up=$(now)

"$VENV/bin/python" deploy/compose/ci/check_stack.py ready --timeout "$TIMEOUT" || fail "the stack did not become ready"
t_ready=$(now)

# The healthchecks compose.yaml declares, run once each (podman has no systemd here to schedule them).
for c in $(project_containers); do
    name=$(podman inspect --format '{{.Name}}' "$c")
    podman healthcheck run "$c" >/dev/null 2> >(quiet_systemd) || fail "healthcheck of $name failed"
done
log "compose healthchecks: all $(project_containers | wc -l) containers healthy"

"$VENV/bin/python" deploy/compose/ci/check_stack.py live --timeout "$TIMEOUT" --requests "$REQUESTS" \
    --fixtures "$FIXTURES" --traffic tests/data/test/breast_cancer.csv || fail "live checks"
t_live=$(now)

# Failover: stop one replica the way compose does (SIGTERM, its stop_grace_period), then nginx must answer every
# prediction from the other two (connection refused is retried on another replica).
replica3=$(podman ps -q --filter "label=io.podman.compose.project=$PROJECT" --filter "label=io.podman.compose.service=inferd-3")
[ -n "$replica3" ] || fail "no inferd-3 container"
t0=$(now)
podman stop -t 40 "$replica3" >/dev/null 2> >(quiet_systemd) || fail "stopping inferd-3"
stop_s=$(( $(now) - t0 ))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$replica3")
log "inferd-3 stopped in ${stop_s} s (shutdown delay 2 s; exit code $exit_code)"
[ "$exit_code" = 0 ] || fail "inferd-3 exited with $exit_code on SIGTERM"
"$VENV/bin/python" deploy/compose/ci/check_stack.py failover --requests 60 \
    --fixtures "$FIXTURES" --traffic tests/data/test/breast_cancer.csv || fail "failover"
t_failover=$(now)

teardown || fail "teardown"
t_end=$(now)
log "SUMMARY: bring-up tool podman-compose $PODMAN_COMPOSE_VERSION; inferd image $((t_inferd - t_start)) s," \
    "stand-ins $((t_images - t_inferd)) s, up $((t_up - t_up0)) s, ready $((t_ready - t_up)) s," \
    "checks $((t_live - t_ready)) s, failover $((t_failover - t_live)) s, down ${t_down} s, total $((t_end - t_start)) s"
log "OK"
