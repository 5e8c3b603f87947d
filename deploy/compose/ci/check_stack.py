#!/usr/bin/env python3
"""Checks for the compose stack (deploy/compose/compose.yaml), run by .ci/compose-check.sh.

    check_stack.py grafana   # before bring-up: the Grafana provisioning files and their wiring in compose.yaml
    check_stack.py ready     # wait until every service of the stack answers
    check_stack.py live      # prediction through nginx (= the fixture), the test split's rows spread over every
                             # replica, fleet PSI in Prometheus,
                             # Alertmanager wired, rules healthy, the dashboard's queries valid
    check_stack.py failover  # with inferd-3 stopped, every prediction through nginx still answered by the others

Grafana itself is not run in CI (no Grafana image can be had there): `grafana` checks what Grafana would read
(YAML and JSON parse, the data source uid every panel names is provisioned, the provider's path is where
compose.yaml mounts the dashboards, the data source URL is where compose.yaml's Prometheus listens), and `live`
runs every query of the dashboard against the stack's Prometheus.

Standard library only, but for PyYAML in the `grafana` phase (podman-compose's virtual environment has it).
Every wait is bounded by --timeout; exits non-zero with the reason on the first failure.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

COMPOSE_DIR = Path(__file__).resolve().parent.parent  # deploy/compose
DEPLOY_DIR = COMPOSE_DIR.parent  # deploy

PROXY = "http://127.0.0.1:8080"
REPLICAS = {"inferd-1": "http://127.0.0.1:8081", "inferd-2": "http://127.0.0.1:8082", "inferd-3": "http://127.0.0.1:8083"}
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
MODEL = "breast_cancer"


def log(message: str) -> None:
    print(f"[compose-check] {message}", file=sys.stderr, flush=True)


class CheckFailed(Exception):
    pass


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET url; (status, body), status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_for(what: str, probe, deadline: float, interval: float = 1.0):
    """Call probe() until it returns something truthy; fail at the deadline with its last answer."""
    last = None
    while True:
        try:
            result, last = probe()
        except CheckFailed:
            raise
        except Exception as error:  # a half-started service may answer anything
            result, last = None, repr(error)
        if result:
            return result
        if time.monotonic() >= deadline:
            raise CheckFailed(f"timed out waiting for {what} (last: {str(last)[:300]})")
        time.sleep(interval)


def prom_query(expr: str) -> list[dict]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = get(url, timeout=10)
    if status != 200:
        raise CheckFailed(f"Prometheus query failed (HTTP {status}): {expr}\n{body[:500]!r}")
    answer = json.loads(body)
    if answer.get("status") != "success":
        raise CheckFailed(f"Prometheus query failed: {expr}: {answer}")
    return answer["data"]["result"]


# ------------------------------------------------------------------ ready
def phase_ready(args) -> None:
    deadline = time.monotonic() + args.timeout
    t0 = time.monotonic()
    endpoints = [(f"{name} /health/ready", f"{base}/health/ready") for name, base in REPLICAS.items()]
    endpoints += [
        ("nginx /nginx-health", f"{PROXY}/nginx-health"),
        ("nginx -> inferd /health/ready", f"{PROXY}/health/ready"),
        ("Prometheus /-/ready", f"{PROMETHEUS}/-/ready"),
        ("Alertmanager /-/ready", f"{ALERTMANAGER}/-/ready"),
    ]
    for what, url in endpoints:

        def probe(url=url):
            status, body = get(url, timeout=2)
            return status == 200, f"HTTP {status} {body[:200]!r}"

        wait_for(what, probe, deadline, interval=0.5)
        log(f"{what}: 200 after {time.monotonic() - t0:.1f} s")


# ------------------------------------------------------------------ live
def predict_body(record) -> bytes:
    return json.dumps({"instances": [record]}).encode()


def check_fixture_prediction(fixtures: dict) -> None:
    case = fixtures["cases"][0]
    tolerance = float(fixtures.get("tolerance", 1e-5))
    request = urllib.request.Request(
        f"{PROXY}/predict", data=predict_body(case["input"]), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    if status != 200:
        raise CheckFailed(f"POST {PROXY}/predict: HTTP {status}: {body[:500]!r}")
    answer = json.loads(body)
    got = answer["predictions"][0]
    want = case["output"]
    errors = []
    if got.get("label") != want["label"]:
        errors.append(f"label {got.get('label')!r} != fixture {want['label']!r}")
    for label, p in (want.get("probabilities") or {}).items():
        q = (got.get("probabilities") or {}).get(label)
        if q is None or not math.isfinite(q) or abs(q - p) > tolerance:
            errors.append(f"probability[{label!r}] {q} != fixture {p} (tolerance {tolerance})")
    if errors:
        raise CheckFailed("prediction through nginx does not match the fixture: " + "; ".join(errors))
    log(
        f"POST /predict through nginx: label {got['label']!r} = fixture, probabilities within {tolerance} "
        f"(model {answer.get('model')}, version {answer.get('version')})"
    )


def traffic_records(path: Path, fixtures: dict) -> list[dict]:
    """The rows of a CSV split (the model's test split: in-distribution), as records of the model's features."""
    features = list(fixtures["cases"][0]["input"])
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = [name for name in features if rows and name not in rows[0]]
    if not rows or missing:
        raise CheckFailed(f"{path}: no rows, or columns missing: {missing}")
    return [{name: float(row[name]) for name in features} for row in rows]


def send_traffic(records: list[dict], count: int) -> None:
    """count single-record predictions through nginx over one keep-alive connection, cycling the records."""
    cases = records
    connection = http.client.HTTPConnection("127.0.0.1", 8080, timeout=30)
    statuses: dict[int, int] = {}
    t0 = time.monotonic()
    for i in range(count):
        connection.request("POST", "/predict", body=predict_body(cases[i % len(cases)]),
                           headers={"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
    connection.close()
    elapsed = time.monotonic() - t0
    log(f"{count} predictions through nginx in {elapsed:.2f} s ({count / elapsed:.0f}/s): HTTP {statuses}")
    if statuses != {200: count}:
        raise CheckFailed(f"not every prediction answered 200: {statuses}")


def replica_predict_counts() -> dict[str, float]:
    return replica_predict_counts_of(list(REPLICAS))


def replica_predict_counts_of(names: list[str]) -> dict[str, float]:
    """inferd_requests_total{endpoint="/predict", code="200"} of each named replica, read from its own /metrics."""
    pattern = re.compile(r'^inferd_requests_total\{([^}]*)\}\s+(\S+)', re.M)
    counts = {}
    for name in names:
        base = REPLICAS[name]
        status, body = get(f"{base}/metrics", timeout=5)
        if status != 200:
            raise CheckFailed(f"{name} /metrics: HTTP {status}")
        total = 0.0
        for labels, value in pattern.findall(body.decode()):
            if 'endpoint="/predict"' in labels and 'code="200"' in labels:
                total += float(value)
        counts[name] = total
    return counts


def check_traffic_spread(sent: int) -> None:
    counts = replica_predict_counts()
    log("inferd_requests_total{endpoint=\"/predict\",code=\"200\"} per replica: "
        + ", ".join(f"{name} {value:.0f}" for name, value in counts.items()))
    if sum(counts.values()) != sent:
        raise CheckFailed(f"the replicas counted {sum(counts.values()):.0f} predictions, {sent} were sent")
    starved = [name for name, value in counts.items() if value < sent / 10]
    if starved:
        raise CheckFailed(f"nginx did not spread the traffic: {starved} got under a tenth of it ({counts})")


def wait_for_first_scrape(deadline: float) -> None:
    """Every replica up in Prometheus, under its own instance label, with its bin counters scraped at 0.

    Before any traffic: increase() needs a sample from before the traffic, and a counter whose first scrape
    already holds every observation shows no increase at all (the fleet PSI would stay absent).
    """

    def targets_up():
        instances = [r["metric"].get("instance") for r in prom_query('up{job="inferd"} == 1')]
        return (instances if len(instances) == 3 else None), instances

    instances = wait_for("3 inferd targets up in Prometheus", targets_up, deadline)

    def bins_scraped():
        result = prom_query(f'count by (instance) (inferd_feature_bin_total{{job="inferd", model="{MODEL}"}})')
        return len(result) == 3, result

    wait_for("the replicas' inferd_feature_bin_total in Prometheus", bins_scraped, deadline)
    log(f"Prometheus: up{{job=\"inferd\"}} = 1 and bin counters scraped for {sorted(instances)}")


def offline_fleet_psi() -> dict[str, float]:
    """DESIGN §10's fleet PSI computed here, from the three replicas' own /metrics: bin counters summed across
    replicas against the reference shares, both floored at 1e-4."""
    sample = re.compile(r'^(inferd_feature_bin_total|inferd_feature_reference_ratio)\{([^}]*)\}\s+(\S+)', re.M)
    label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    counts: dict[tuple[str, str], float] = {}
    reference: dict[tuple[str, str], float] = {}
    for name, base in REPLICAS.items():
        status, body = get(f"{base}/metrics", timeout=5)
        if status != 200:
            raise CheckFailed(f"{name} /metrics: HTTP {status}")
        for metric, labels, value in sample.findall(body.decode()):
            labels = dict(label.findall(labels))
            if labels.get("model") != MODEL or labels.get("feature") == "_prediction":
                continue
            key = (labels["feature"], labels["bin"])
            if metric == "inferd_feature_bin_total":
                counts[key] = counts.get(key, 0.0) + float(value)
            else:
                reference[key] = float(value)
    totals: dict[str, float] = {}
    for (feature, _), count in counts.items():
        totals[feature] = totals.get(feature, 0.0) + count
    psi: dict[str, float] = {}
    for (feature, bin_), expected in reference.items():
        actual = max(counts.get((feature, bin_), 0.0) / totals[feature], 1e-4)
        expected = max(expected, 1e-4)
        psi[feature] = psi.get(feature, 0.0) + (actual - expected) * math.log(actual / expected)
    return psi


def check_fleet_psi(sent: int, deadline: float) -> None:
    # Wait until a scrape has seen all the traffic, then until the recording rules have evaluated on it.
    def traffic_scraped():
        result = prom_query(f'sum(inferd_requests_total{{job="inferd", model="{MODEL}", endpoint="/predict", code="200"}})')
        value = float(result[0]["value"][1]) if result else 0.0
        return value >= sent, value

    t0 = time.monotonic()
    wait_for("Prometheus to scrape the predictions", traffic_scraped, deadline)

    def fleet_psi():
        result = prom_query(f'inferd:feature_drift_psi:fleet{{model="{MODEL}"}}')
        observations = prom_query(f'inferd:feature_observations:fleet1h{{model="{MODEL}", feature!="_prediction"}}')
        seen = min((float(r["value"][1]) for r in observations), default=0.0)
        # increase() only ever extrapolates upwards (to the end of its window; not back past a counter's 0), so
        # the fleet has seen every observation once an evaluation includes every replica's scrape after the
        # traffic, and not before.
        return (result if result and seen >= sent else None), f"{len(result)} series, {seen:.1f} observations"

    series = wait_for("inferd:feature_drift_psi:fleet series covering the traffic", fleet_psi, deadline)
    log(f"fleet PSI recorded {time.monotonic() - t0:.1f} s after the traffic")
    per_instance = prom_query(f'count by (instance) (inferd_feature_bin_total{{model="{MODEL}"}})')
    if len(per_instance) != 3:
        raise CheckFailed(f"inferd_feature_bin_total should come from 3 instances, got {per_instance}")
    observations = prom_query(f'inferd:feature_observations:fleet1h{{model="{MODEL}", feature="mean radius"}}')
    prediction = prom_query(f'inferd:prediction_drift_psi:fleet{{model="{MODEL}"}}')
    values = sorted(((float(r["value"][1]), r["metric"]["feature"]) for r in series), reverse=True)
    log(f"inferd:feature_drift_psi:fleet{{model=\"{MODEL}\"}}: {len(values)} features, "
        f"summed over {len(per_instance)} instances; increase() of 'mean radius' observations in the hour: "
        f"{float(observations[0]['value'][1]):.1f} (sent {sent}; increase() extrapolates, shares do not move)")
    for value, feature in values[:5]:
        log(f"  {feature:<28} {value:.4f}")
    log(f"  ... smallest {values[-1][1]} {values[-1][0]:.4f}")
    if prediction:
        log(f"inferd:prediction_drift_psi:fleet{{model=\"{MODEL}\"}} = {float(prediction[0]['value'][1]):.4f}")
    bad = [(feature, value) for value, feature in values if not math.isfinite(value) or value < 0]
    if bad:
        raise CheckFailed(f"fleet PSI not a finite non-negative number: {bad}")
    # The same PSI from the replicas' counters directly. Not equal to the last digit: increase() scales each
    # replica's counts by its own extrapolation factor, which reweights the replicas a little (differences
    # of about 0.01 here). One replica's traffic alone would be off by several times that (about a third of
    # the observations: sampling noise alone triples its PSI); tools/fleet_check.py checks the equality exactly.
    offline = offline_fleet_psi()
    recorded = {feature: value for value, feature in values}
    if set(offline) != set(recorded):
        raise CheckFailed(f"features differ: recorded {sorted(recorded)}, offline {sorted(offline)}")
    worst = max(offline, key=lambda feature: abs(offline[feature] - recorded[feature]))
    difference = abs(offline[worst] - recorded[worst])
    log(f"offline PSI of the three replicas' summed bin counters: largest difference from Prometheus's "
        f"{difference:.4f} ({worst}: {offline[worst]:.4f} vs {recorded[worst]:.4f})")
    if difference > 0.05:
        raise CheckFailed(f"fleet PSI of {worst!r} recorded {recorded[worst]:.4f}, offline {offline[worst]:.4f}")


def check_alertmanager(deadline: float) -> None:
    status, body = get(f"{ALERTMANAGER}/-/ready")
    if status != 200:
        raise CheckFailed(f"Alertmanager /-/ready: HTTP {status}")

    def active():
        status, body = get(f"{PROMETHEUS}/api/v1/alertmanagers")
        urls = [a["url"] for a in json.loads(body)["data"]["activeAlertmanagers"]] if status == 200 else []
        return (urls if any("127.0.0.1:9093" in url for url in urls) else None), urls

    urls = wait_for("Prometheus to list the Alertmanager as active", active, deadline)
    status, body = get(f"{ALERTMANAGER}/api/v2/status")
    version = json.loads(body).get("versionInfo", {}).get("version", "?") if status == 200 else "?"
    log(f"Alertmanager {version} ready; Prometheus's active alertmanagers: {urls}")


def check_rules(deadline: float) -> None:
    """Every rule of the mounted rules.yml and alerts.yml loaded, and none failing to evaluate."""

    def evaluated():
        status, body = get(f"{PROMETHEUS}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"] if status == 200 else []
        rules = [rule for group in groups for rule in group["rules"]]
        return (groups if rules and all(r.get("health") != "unknown" for r in rules) else None), f"{len(rules)} rules"

    groups = wait_for("every rule to be evaluated once", evaluated, deadline)
    files = sorted({Path(g["file"]).name for g in groups})
    rules = [rule for group in groups for rule in group["rules"]]
    failing = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
    if files != ["alerts.yml", "rules.yml"]:
        raise CheckFailed(f"expected the rules of rules.yml and alerts.yml, Prometheus loaded {files}")
    if failing:
        raise CheckFailed(f"rules failing to evaluate: {failing}")
    firing = prom_query('ALERTS{alertstate="firing"}')
    log(f"Prometheus rules: {len(groups)} groups, {len(rules)} rules from {files}, all healthy; "
        f"firing alerts: {[r['metric']['alertname'] for r in firing] or 'none'}")


def check_dashboard_queries() -> None:
    """Run every PromQL query of the Grafana dashboard against the stack's Prometheus, as Grafana would."""
    dashboard = json.loads((DEPLOY_DIR / "grafana/dashboards/inferd.json").read_text())
    substitutions = {"model": MODEL, "version": ".*", "__rate_interval": "1m", "__interval": "15s",
                     "__range": "1h"}

    def expand(expr: str) -> str:
        def one(match):
            name = match.group(1) or match.group(2)
            if name not in substitutions:
                raise CheckFailed(f"dashboard query uses an unknown variable ${name}: {expr}")
            return substitutions[name]

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    queries = [(p.get("title", "?"), t["expr"]) for p in panels(dashboard["panels"])
               for t in p.get("targets", []) if t.get("expr")]
    queries += [(f"annotation {a['name']}", a["expr"]) for a in dashboard["annotations"]["list"] if a.get("expr")]
    with_data = 0
    for title, expr in queries:
        if prom_query(expand(expr)):
            with_data += 1
    variables = 0
    for variable in dashboard.get("templating", {}).get("list", []):
        definition = variable.get("definition") or ""
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", definition.strip())
        if not match:
            continue
        result = prom_query(expand(match.group(1)))
        values = sorted({r["metric"].get(match.group(2)) for r in result} - {None})
        if not values:
            raise CheckFailed(f"dashboard variable ${variable['name']} ({definition}) has no value")
        variables += 1
    log(f"Grafana dashboard: {len(queries)} queries valid against Prometheus ({with_data} with data now), "
        f"{variables} template variables with values")


def phase_failover(args) -> None:
    """With inferd-3 stopped: every prediction through nginx still answered, by the two others."""
    fixtures = json.loads(Path(args.fixtures).read_text())
    status, _ = get(f"{REPLICAS['inferd-3']}/health/live", timeout=2)
    if status != 0:
        raise CheckFailed(f"inferd-3 should be stopped, it answered HTTP {status}")
    before = replica_predict_counts_of(["inferd-1", "inferd-2"])
    send_traffic(traffic_records(Path(args.traffic), fixtures), args.requests)
    after = replica_predict_counts_of(["inferd-1", "inferd-2"])
    grown = sum(after.values()) - sum(before.values())
    if grown != args.requests:
        raise CheckFailed(f"inferd-1 and inferd-2 answered {grown:.0f} of {args.requests} predictions")
    log(f"inferd-3 stopped: nginx sent all {args.requests} predictions to the two others "
        f"({', '.join(f'{name} +{after[name] - before[name]:.0f}' for name in after)})")


def phase_live(args) -> None:
    deadline = time.monotonic() + args.timeout
    fixtures = json.loads(Path(args.fixtures).read_text())
    wait_for_first_scrape(deadline)
    check_fixture_prediction(fixtures)
    send_traffic(traffic_records(Path(args.traffic), fixtures), args.requests)
    sent = args.requests + 1
    check_traffic_spread(sent)
    check_fleet_psi(sent, deadline)
    check_alertmanager(deadline)
    check_rules(deadline)
    check_dashboard_queries()


# ------------------------------------------------------------------ grafana
def phase_grafana(args) -> None:
    import yaml  # podman-compose's dependency

    provisioning = DEPLOY_DIR / "grafana/provisioning"
    datasource_files = sorted((provisioning / "datasources").glob("*.y*ml"))
    provider_files = sorted((provisioning / "dashboards").glob("*.y*ml"))
    dashboard_files = sorted((DEPLOY_DIR / "grafana/dashboards").glob("*.json"))
    if not (datasource_files and provider_files and dashboard_files):
        raise CheckFailed(f"Grafana files missing under {DEPLOY_DIR / 'grafana'}")

    datasources = {}
    for path in datasource_files:
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            if not source.get("uid"):
                raise CheckFailed(f"{path}: data source {source.get('name')!r} has no uid (dashboards refer to uids)")
            datasources[source["uid"]] = source
    providers = [p for path in provider_files for p in yaml.safe_load(path.read_text()).get("providers", [])]

    compose = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    services = compose["services"]
    grafana = services.get("grafana") or {}
    if grafana.get("profiles") != ["dashboards"]:
        raise CheckFailed("compose.yaml: the grafana service should be under the `dashboards` profile")
    others = [name for name, service in services.items() if name != "grafana" and service.get("profiles")]
    if others:
        raise CheckFailed(f"compose.yaml: only grafana is optional, yet {others} have profiles")
    mounts = {}
    for volume in grafana.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (COMPOSE_DIR / source).resolve() if source.startswith(".") else source
    if mounts.get("/etc/grafana/provisioning") != provisioning.resolve():
        raise CheckFailed(f"compose.yaml: {provisioning} is not mounted at /etc/grafana/provisioning ({mounts})")
    for provider in providers:
        path = provider.get("options", {}).get("path")
        if mounts.get(path) != (DEPLOY_DIR / "grafana/dashboards").resolve():
            raise CheckFailed(f"dashboard provider {provider.get('name')!r} reads {path}, where compose.yaml "
                              f"does not mount deploy/grafana/dashboards ({mounts})")
    home = grafana.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        directory, name = home.rsplit("/", 1)
        mounted = mounts.get(directory)
        if not (isinstance(mounted, Path) and (mounted / name).is_file()):
            raise CheckFailed(f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH={home} is not a mounted file")

    listen = next((arg.split("=", 1)[1] for arg in services["prometheus"]["command"]
                   if arg.startswith("--web.listen-address=")), None)
    for uid, source in datasources.items():
        if source.get("type") == "prometheus":
            address = urllib.parse.urlsplit(source.get("url", "")).netloc
            if address != listen:
                raise CheckFailed(f"data source {uid!r} points at {address}, compose.yaml's Prometheus "
                                  f"listens on {listen}")

    def references(node):
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict):
                yield source
            elif isinstance(source, str):
                yield {"uid": source}
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    for path in dashboard_files:
        dashboard = json.loads(path.read_text())
        if not dashboard.get("uid") or not dashboard.get("title"):
            raise CheckFailed(f"{path}: dashboard without uid or title")
        used = {(ref.get("type"), ref.get("uid")) for ref in references(dashboard)}
        missing = {ref for ref in used if ref[0] != "grafana" and ref[1] not in datasources}
        if missing:
            raise CheckFailed(f"{path.name}: data sources not provisioned: {sorted(map(str, missing))} "
                              f"(provisioned: {sorted(datasources)})")
        log(f"Grafana: {path.name} (uid {dashboard['uid']!r}) parses; data sources it uses "
            f"{sorted(uid for kind, uid in used if kind != 'grafana')} are provisioned")
    log(f"Grafana: provisioning parses ({len(datasources)} data source, {len(providers)} provider); "
        f"provider path and home dashboard mounted by compose.yaml; data source URL = Prometheus's {listen}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["grafana", "ready", "live", "failover"])
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on the phase's waits, seconds")
    parser.add_argument("--fixtures", default="models/breast_cancer/1/fixtures.json")
    parser.add_argument("--traffic", default="tests/data/test/breast_cancer.csv",
                        help="CSV whose rows are sent through nginx (in-distribution: the model's test split)")
    parser.add_argument("--requests", type=int, default=300, help="predictions sent through nginx")
    args = parser.parse_args()
    try:
        {"grafana": phase_grafana, "ready": phase_ready, "live": phase_live, "failover": phase_failover}[args.phase](args)
    except CheckFailed as error:
        log(f"FAIL: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
