#!/usr/bin/env python3
"""The alerting chain, end to end on real processes: inferd → Prometheus (deploy/prometheus/*.yml) →
Alertmanager (deploy/alertmanager.yml) → a webhook receiver.

    python3 tools/chain_test.py --inferd target/debug/inferd [--keep-logs DIR]

Starts inferd on the bundled models (default model breast_cancer), a webhook receiver, Prometheus and
Alertmanager on free loopback ports, with copies of the deploy/ configuration changed only where a test must
(1 s scrape / evaluation, every alert `for:` 2 s, 1 s group_wait / group_interval, the chosen ports). Then:

  1. 1000 in-distribution rows (tests/data/train/breast_cancer.csv cycled, the size of the drift window):
     inferd_drift_level is 0 for every feature and no InferdFeatureDrift alert is pending or firing;
  2. 1000 rows with only "mean radius" shifted by +3 training standard deviations: InferdFeatureDrift
     {feature="mean radius", severity="critical"} fires in Prometheus, reaches the webhook on /alerts/critical,
     and no InferdFeatureDrift alert names any other feature;
  3. `promtool check metrics` on a live scrape of inferd's /metrics is clean.

Standard library only. Exits 0 when everything holds, 1 with a message naming the failed check otherwise;
every process it started is stopped (by PID) either way. Bounded: about 3 minutes at most.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = "breast_cancer"
SHIFTED = "mean radius"
SHIFT_STDS = 3.0
ROWS = 1000  # the model's drift window (manifest `window`, default 1000)
CHUNK = 100
ALERT = "InferdFeatureDrift"
TOTAL_LIMIT_S = 175  # the whole test, startup included
ALERT_DEADLINE_S = 60  # from the shifted traffic to the webhook
# the addresses deploy/ is written for, and what each becomes
INFERD_ADDR = ("127.0.0.1:8080", "localhost:8080")
ALERTMANAGER_ADDR = ("127.0.0.1:9093", "localhost:9093")
WEBHOOK_ADDR = ("127.0.0.1:5001", "localhost:5001")


class ChainFailure(Exception):
    """A failed check; the message says which and what was seen."""


class Timeline:
    """Timestamped progress lines. `left()` counts down from `limit_s` (tools/demo_monitoring.py replaces the
    module's `log` with a longer one)."""

    def __init__(self, limit_s: float = TOTAL_LIMIT_S):
        self.t0 = time.monotonic()
        self.limit_s = limit_s
        self.events = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, message: str):
        self.events.append((self.elapsed(), message))
        print(f"[{self.elapsed():6.1f}s] {message}", flush=True)

    def left(self) -> float:
        return self.limit_s - self.elapsed()

    def summary(self) -> str:
        return "\n".join(f"  {t:6.1f}s  {m}" for t, m in self.events)


log = Timeline()


# --- processes ------------------------------------------------------------------------------------------------
class Processes:
    """Everything started here, stopped by PID (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, logdir: pathlib.Path):
        self.logdir = logdir
        self.started: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list, cwd=None) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd)
        except OSError as e:
            out.close()
            raise ChainFailure(f"cannot start {name} ({argv[0]}): {e}")
        self.started.append((name, proc, out))
        log(f"started {name} (pid {proc.pid})")
        return proc

    def check_alive(self):
        for name, proc, _ in self.started:
            if proc.poll() is not None:
                raise ChainFailure(f"{name} (pid {proc.pid}) exited with status {proc.returncode}:\n"
                                   + tail(self.logdir / f"{name}.log"))

    def stop_all(self):
        for name, proc, out in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                print(f"stopped {name} (pid {proc.pid}, status {proc.returncode})", flush=True)
            out.close()
        self.started.clear()


def tail(path: pathlib.Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- HTTP -----------------------------------------------------------------------------------------------------
def http(method: str, url: str, body=None, timeout: float = 10.0):
    """(status, parsed JSON or text); connection errors give status 0."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as e:
        return 0, str(e)
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_for(what: str, probe, timeout: float, procs: Processes | None = None, interval: float = 0.25):
    """Polls `probe()` (returns (done, state)) until done, at most `timeout` s and never past the overall limit."""
    end = time.monotonic() + max(0.0, min(timeout, log.left()))
    state = None
    while True:
        if procs is not None:
            procs.check_alive()
        done, state = probe()
        if done:
            return state
        if time.monotonic() >= end:
            raise ChainFailure(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {state}")
        time.sleep(interval)


class Prometheus:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list:
        status, body = http("GET", f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise ChainFailure(f"Prometheus query {expr!r} failed: {status} {body}")
        return body["data"]["result"]

    def alerts(self) -> list:
        status, body = http("GET", f"{self.base}/api/v1/alerts")
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise ChainFailure(f"Prometheus /api/v1/alerts failed: {status} {body}")
        return body["data"]["alerts"]


# --- webhook receiver -------------------------------------------------------------------------------------------
class Webhook:
    """Records every POSTed Alertmanager payload with its path."""

    def __init__(self):
        self.received: list[tuple[float, str, object]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = raw.decode("utf-8", errors="replace")
                with owner.lock:
                    owner.received.append((log.elapsed(), self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self) -> list:
        with self.lock:
            return list(self.received)

    def alerts(self, path: str | None = None) -> list:
        """(path, payload status, alert) for every alert of every payload (on `path`)."""
        out = []
        for _, p, payload in self.snapshot():
            if (path is None or p == path) and isinstance(payload, dict):
                out += [(p, a.get("status"), a) for a in payload.get("alerts", [])]
        return out

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- configuration ----------------------------------------------------------------------------------------------
def replace_addresses(text: str, olds: tuple, new: str, where: str) -> str:
    count = sum(text.count(o) for o in olds)
    if count == 0:
        raise ChainFailure(f"{where} names none of {', '.join(olds)}: cannot point it at the test's ports")
    for o in olds:
        text = text.replace(o, new)
    return text


def set_key(text: str, key: str, value: str) -> str:
    """Every `key: …` line (any indentation, list item or not) gets `value`; comments after it are kept out."""
    return re.sub(rf"^([ \t]*(?:-[ \t]+)?{re.escape(key)}:)[ \t]*[^#\n]*?([ \t]*(#.*)?)$", rf"\g<1> {value}\g<2>", text,
                  flags=re.M)


def rewrite_prometheus(text: str, inferd_port: int, am_port: int, interval: str = "1s") -> str:
    text = replace_addresses(text, INFERD_ADDR, f"127.0.0.1:{inferd_port}", "prometheus.yml")
    text = replace_addresses(text, ALERTMANAGER_ADDR, f"127.0.0.1:{am_port}", "prometheus.yml")
    if not re.search(r"^\s*(-\s+)?job_name:\s*[\"']?inferd[\"']?\s*(#.*)?$", text, flags=re.M):
        raise ChainFailure("prometheus.yml has no scrape job named \"inferd\"")
    for key in ("scrape_interval", "evaluation_interval", "scrape_timeout"):
        text = set_key(text, key, interval)
    if not re.search(r"^\s*evaluation_interval:", text, flags=re.M):  # default 1m: set it in `global`
        text = re.sub(r"^global:[ \t]*\n", f"global:\n  evaluation_interval: {interval}\n", text, count=1, flags=re.M)
    if not re.search(r"^\s*scrape_interval:", text, flags=re.M):
        text = re.sub(r"^global:[ \t]*\n", f"global:\n  scrape_interval: {interval}\n", text, count=1, flags=re.M)
    # rule files are copied next to prometheus.yml: keep only their names
    def local(match):
        return match.group(1) + pathlib.PurePosixPath(match.group(2).strip("\"'")).name + match.group(3)
    block = re.search(r"^rule_files:[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", text, flags=re.M)
    if block:
        items = re.sub(r"^([ \t]*-[ \t]*)([^\s#]+)([ \t]*(?:#.*)?)$", local, block.group(1), flags=re.M)
        text = text[:block.start(1)] + items + text[block.end(1):]
    return text


def rewrite_rules(text: str, interval: str = "1s", for_: str = "2s") -> str:
    text = set_key(text, "for", for_)
    return set_key(text, "interval", interval)  # a group's own evaluation interval


def rewrite_alertmanager(text: str, webhook_port: int, interval: str = "1s") -> str:
    text = replace_addresses(text, WEBHOOK_ADDR, f"127.0.0.1:{webhook_port}", "alertmanager.yml")
    for key in ("group_wait", "group_interval"):
        text = set_key(text, key, interval)
    if not re.search(r"^\s*group_wait:", text, flags=re.M):
        text = re.sub(r"^route:[ \t]*\n", f"route:\n  group_wait: {interval}\n", text, count=1, flags=re.M)
    if not re.search(r"^\s*group_interval:", text, flags=re.M):
        text = re.sub(r"^route:[ \t]*\n", f"route:\n  group_interval: {interval}\n", text, count=1, flags=re.M)
    return text


def write_configs(deploy: pathlib.Path, tmp: pathlib.Path, ports: dict,
                  interval: str = "1s") -> tuple[pathlib.Path, pathlib.Path]:
    """Copies of deploy/'s Prometheus and Alertmanager configuration pointed at `ports`, with every scrape,
    evaluation and group interval `interval` and every `for:` 2 s."""
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    for name in ("prometheus.yml", "rules.yml", "alerts.yml"):
        src = deploy / "prometheus" / name
        if not src.is_file():
            raise ChainFailure(f"{src} is missing")
        text = src.read_text()
        if name == "prometheus.yml":
            text = rewrite_prometheus(text, ports["inferd"], ports["alertmanager"], interval)
        else:
            text = rewrite_rules(text, interval)
        (prom_dir / name).write_text(text)
    src = deploy / "alertmanager.yml"
    if not src.is_file():
        raise ChainFailure(f"{src} is missing")
    am = tmp / "alertmanager.yml"
    am.write_text(rewrite_alertmanager(src.read_text(), ports["webhook"], interval))
    if ALERT not in (prom_dir / "alerts.yml").read_text():
        raise ChainFailure(f"{deploy / 'prometheus/alerts.yml'} defines no {ALERT} alert")
    return prom_dir / "prometheus.yml", am


def check_config(argv: list, what: str):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise ChainFailure(f"{what} rejects the test's configuration:\n{proc.stdout}{proc.stderr}")


# --- traffic ----------------------------------------------------------------------------------------------------
def training_rows() -> tuple[list, list]:
    """(feature names, rows as {feature: float}) of tests/data/train/breast_cancer.csv (target column dropped)."""
    path = ROOT / "tests/data/train" / f"{MODEL}.csv"
    manifest = tomllib.loads((ROOT / "models" / MODEL / "1" / "inferd.toml").read_text())
    names = [f["name"] for f in manifest["features"]]
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [n for n in names if n not in (reader.fieldnames or [])]
        if missing:
            raise ChainFailure(f"{path} lacks the manifest's features {missing}")
        rows = [{n: float(r[n]) for n in names} for r in reader]
    return names, rows


def cycled(rows: list, n: int) -> list:
    return [dict(rows[i % len(rows)]) for i in range(n)]


def send(base: str, instances: list, what: str):
    for start in range(0, len(instances), CHUNK):
        chunk = instances[start:start + CHUNK]
        status, body = http("POST", f"{base}/predict", {"instances": chunk}, timeout=30)
        if status != 200:
            raise ChainFailure(f"POST /predict ({what}, rows {start}..{start + len(chunk) - 1}) answered {status}: "
                               f"{str(body)[:500]}")
        got = len(body.get("predictions", [])) if isinstance(body, dict) else 0
        if got != len(chunk):
            raise ChainFailure(f"POST /predict ({what}) returned {got} predictions for {len(chunk)} instances")


def by_feature(result: list) -> dict:
    return {r["metric"].get("feature"): float(r["value"][1]) for r in result}


def feature_alerts(alerts: list) -> list:
    return [a for a in alerts if a.get("labels", {}).get("alertname") == ALERT]


def describe(alerts: list) -> str:
    return ", ".join(f"{a['labels'].get('feature')}/{a['labels'].get('severity')}/{a.get('state', a.get('status'))}"
                     for a in alerts) or "none"


# --- the stack ----------------------------------------------------------------------------------------------------
def start_stack(args, tmp: pathlib.Path, procs: Processes, webhook: Webhook, interval: str = "1s",
                inferd_extra: str = "") -> tuple[dict, str, Prometheus]:
    """Starts inferd (bundled models, default MODEL; `inferd_extra` is appended to its TOML configuration),
    Alertmanager and Prometheus (deploy/ configuration via write_configs, `interval` for scrapes, evaluations and
    alert groups) on free loopback ports, and waits until Prometheus scrapes inferd.
    Returns (ports, inferd base URL, Prometheus)."""
    ports = {"inferd": free_port(), "prometheus": free_port(), "alertmanager": free_port(), "webhook": webhook.port}
    while len(set(ports.values())) < len(ports):  # free_port() may hand the same port out twice
        ports["prometheus"], ports["alertmanager"] = free_port(), free_port()
    log(f"ports: {ports}")
    prom_config, am_config = write_configs(args.deploy, tmp, ports, interval)
    check_config([args.promtool, "check", "config", prom_config], "promtool check config")
    if args.amtool:
        check_config([args.amtool, "check-config", am_config], "amtool check-config")

    config = tmp / "inferd.toml"
    repo = (ROOT / "models").resolve()
    config.write_text(f'[server]\naddr = "127.0.0.1"\nport = {ports["inferd"]}\n\n'
                      f'[models]\nrepository = {json.dumps(str(repo))}\ndefault = "{MODEL}"\n' + inferd_extra)
    base = f"http://127.0.0.1:{ports['inferd']}"
    procs.start("inferd", [args.inferd, "serve", "--config", config], cwd=tmp)
    (tmp / "prometheus-data").mkdir()
    (tmp / "alertmanager-data").mkdir()
    procs.start("alertmanager", [args.alertmanager, f"--config.file={am_config}",
                                 f"--storage.path={tmp / 'alertmanager-data'}",
                                 f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                                 "--cluster.listen-address="])
    procs.start("prometheus", [args.prometheus, f"--config.file={prom_config}",
                               f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                               f"--web.listen-address=127.0.0.1:{ports['prometheus']}"])
    prom = Prometheus(ports["prometheus"])

    def status_200(url):
        def probe():
            status, _ = http("GET", url, timeout=2)
            return status == 200, status
        return probe
    wait_for("inferd GET /health/ready == 200", status_200(f"{base}/health/ready"), 60, procs)
    log("inferd ready")
    wait_for("Alertmanager ready", status_200(f"http://127.0.0.1:{ports['alertmanager']}/-/ready"), 30, procs)
    wait_for("Prometheus ready", status_200(f"{prom.base}/-/ready"), 30, procs)
    log("Prometheus and Alertmanager ready")

    # one scrape before any traffic: Prometheus must see every counter at its starting value
    def scraped():
        up = prom.query('up{job="inferd"}')
        return bool(up) and all(x["value"][1] == "1" for x in up), up
    wait_for('up{job="inferd"} == 1 in Prometheus', scraped, 30, procs)
    log("Prometheus scrapes inferd")
    return ports, base, prom


# --- the test ---------------------------------------------------------------------------------------------------
def run(args, tmp: pathlib.Path, procs: Processes, webhook: Webhook):
    names, rows = training_rows()
    ports, base, prom = start_stack(args, tmp, procs, webhook)

    # 1. in distribution: nothing drifts -------------------------------------------------------------------
    send(base, cycled(rows, ROWS), "in-distribution")
    log(f"sent {ROWS} in-distribution rows")
    sel = f'model="{MODEL}"'

    def window_full():
        got = by_feature(prom.query(f"inferd_drift_window_observations{{{sel}}}"))
        return all(got.get(n) == ROWS for n in names), {n: got.get(n) for n in names[:3]}
    wait_for(f"inferd_drift_window_observations == {ROWS} for every {MODEL} feature in Prometheus", window_full, 30,
             procs)
    log("drift windows full in Prometheus")
    time.sleep(3.5)  # a few rule evaluations (1 s) after the full windows were scraped
    levels = by_feature(prom.query(f"inferd_drift_level{{{sel}}}"))
    absent = [n for n in names if n not in levels]
    if absent:
        raise ChainFailure(f"inferd_drift_level has no series for {MODEL} features {absent[:5]}")
    nonzero = {f: v for f, v in levels.items() if v != 0}
    if nonzero:
        psi = by_feature(prom.query(f"inferd_feature_drift_psi{{{sel}}}"))
        raise ChainFailure("in-distribution traffic: inferd_drift_level should be 0 everywhere, got "
                           + ", ".join(f"{f}={v:g} (PSI {psi.get(f)})" for f, v in nonzero.items()))
    others = prom.query("inferd_drift_level != 0")
    if others:
        raise ChainFailure("in-distribution traffic: nonzero inferd_drift_level series "
                           f"{[r['metric'] for r in others]}")
    drifting = feature_alerts(prom.alerts())
    if drifting:
        raise ChainFailure(f"in-distribution traffic: {ALERT} alerts exist: {describe(drifting)}")
    log(f"in distribution: inferd_drift_level 0 for all {len(levels)} series of {MODEL}, no {ALERT} alert")

    # 2. "mean radius" shifted by +3 standard deviations: critical alert, delivered -------------------------
    x = [r[SHIFTED] for r in rows]
    mean = sum(x) / len(x)
    std = math.sqrt(sum((v - mean) ** 2 for v in x) / len(x))
    shifted = cycled(rows, ROWS)
    for r in shifted:
        r[SHIFTED] += SHIFT_STDS * std
    sent_at = time.monotonic()
    send(base, shifted, "shifted")
    log(f"sent {ROWS} rows with {SHIFTED!r} + {SHIFT_STDS:g} std (+{SHIFT_STDS * std:.3f})")

    def critical_firing():
        alerts = feature_alerts(prom.alerts())
        hit = [a for a in alerts if a["labels"].get("feature") == SHIFTED and a["labels"].get("severity") == "critical"
               and a["labels"].get("model") == MODEL and a.get("state") == "firing"]
        return bool(hit), describe(alerts)
    wait_for(f'{ALERT}{{feature="{SHIFTED}", severity="critical"}} firing in Prometheus', critical_firing,
             ALERT_DEADLINE_S, procs)
    log(f"Prometheus: {ALERT}{{feature={SHIFTED!r}, severity=\"critical\"}} firing")

    def delivered():
        hit = [a for _, status, a in webhook.alerts("/alerts/critical")
               if a.get("labels", {}).get("alertname") == ALERT and a["labels"].get("feature") == SHIFTED
               and a["labels"].get("severity") == "critical" and a.get("status") == "firing"]
        return bool(hit), [(p, describe([a])) for p, _, a in webhook.alerts()][-5:]
    wait_for(f"the {ALERT} critical alert on the webhook's /alerts/critical", delivered,
             ALERT_DEADLINE_S - (time.monotonic() - sent_at), procs)
    log(f"webhook: {ALERT} for {SHIFTED!r} received on /alerts/critical")

    levels = by_feature(prom.query(f"inferd_drift_level{{{sel}}}"))
    if levels.get(SHIFTED) != 2:
        raise ChainFailure(f"inferd_drift_level{{feature={SHIFTED!r}}} is {levels.get(SHIFTED)}, expected 2")
    wrong = [a for a in feature_alerts(prom.alerts()) if a["labels"].get("feature") != SHIFTED]
    if wrong:
        raise ChainFailure(f"{ALERT} alerts for features other than {SHIFTED!r}: {describe(wrong)}")
    wrong = [a for _, _, a in webhook.alerts() if a.get("labels", {}).get("alertname") == ALERT
             and a["labels"].get("feature") != SHIFTED]
    if wrong:
        raise ChainFailure(f"the webhook received {ALERT} for features other than {SHIFTED!r}: {describe(wrong)}")
    raised = {f: v for f, v in levels.items() if f not in (SHIFTED, "_prediction") and v != 0}
    if raised:
        raise ChainFailure(f"only {SHIFTED!r} was shifted, but inferd_drift_level is nonzero for {raised}")
    log(f"no {ALERT} alert for any other feature (inferd_drift_level of the other {len(names) - 1} features: 0)")

    # 3. the exposition is lint-clean -------------------------------------------------------------------------
    status, text = http("GET", f"{base}/metrics")
    if status != 200 or not isinstance(text, str):
        raise ChainFailure(f"GET /metrics answered {status}")
    (tmp / "metrics.txt").write_text(text)
    proc = subprocess.run([str(args.promtool), "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0 or proc.stdout.strip() or proc.stderr.strip():
        raise ChainFailure(f"promtool check metrics on inferd's /metrics (status {proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")
    log(f"promtool check metrics: clean ({len(text.splitlines())} lines)")
    others = [a for a in prom.alerts() if a["labels"].get("alertname") != ALERT]
    if others:
        log("other alerts now: " + ", ".join(f"{a['labels'].get('alertname')}/{a['labels'].get('severity')}/"
                                             f"{a.get('state')}" for a in others))


def run_guarded(args, tmp: pathlib.Path, procs: "Processes", body) -> tuple:
    """Runs `body(webhook)` with a webhook receiver, then always stops every process started, saves the
    webhook payloads and (with --keep-logs) copies configs and logs. Answers (body's result, failure or None)."""
    webhook = None
    failure = None
    result = None
    try:
        webhook = Webhook()
        log(f"webhook receiver on 127.0.0.1:{webhook.port}")
        result = body(webhook)
    except ChainFailure as e:
        failure = str(e)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        signal.alarm(0)
        try:
            procs.stop_all()
        finally:
            if webhook is not None:
                webhook.stop()
                (tmp / "webhook.json").write_text(json.dumps(
                    [{"t": round(t, 2), "path": p, "payload": body} for t, p, body in webhook.snapshot()], indent=1))
            if args.keep_logs:
                shutil.rmtree(args.keep_logs, ignore_errors=True)
                shutil.copytree(tmp, args.keep_logs, ignore=shutil.ignore_patterns("*-data"))
                print(f"logs and configs kept in {args.keep_logs}")
    return result, failure


def report_failure(program: str, tmp: pathlib.Path, failure: str):
    """Prints the failure with the last lines of each process's log, and removes the scratch directory."""
    print(f"\n{program}: FAILED: {failure}", file=sys.stderr)
    for name in ("inferd", "prometheus", "alertmanager"):
        if (tmp / f"{name}.log").exists():
            print(f"--- {name}.log (last lines)\n{tail(tmp / f'{name}.log', 15)}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)


def find_tool(*names) -> str | None:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    return None


def add_stack_args(ap: argparse.ArgumentParser):
    """The options start_stack reads: --inferd, --keep-logs, --deploy and the Prometheus tools."""
    ap.add_argument("--inferd", required=True, help="the inferd binary, e.g. target/debug/inferd")
    ap.add_argument("--keep-logs", type=pathlib.Path, help="copy configs, logs and webhook payloads here")
    ap.add_argument("--deploy", type=pathlib.Path, default=ROOT / "deploy",
                    help="directory with prometheus/{prometheus,rules,alerts}.yml and alertmanager.yml")
    ap.add_argument("--prometheus", default=find_tool("prometheus"))
    ap.add_argument("--alertmanager", default=find_tool("prometheus-alertmanager", "alertmanager"))
    ap.add_argument("--promtool", default=find_tool("promtool"))
    ap.add_argument("--amtool", default=find_tool("amtool"), help="optional: checks alertmanager.yml first")


def check_stack_args(args, prog: str) -> bool:
    """Resolves args.inferd; False (with a message) when a tool or the binary is missing."""
    for tool in ("prometheus", "alertmanager", "promtool"):
        if not getattr(args, tool):
            print(f"{prog}: FAILED: {tool} not found on PATH (pass --{tool})", file=sys.stderr)
            return False
    args.inferd = pathlib.Path(args.inferd).resolve()
    if not os.access(args.inferd, os.X_OK):
        print(f"{prog}: FAILED: {args.inferd} is not an executable", file=sys.stderr)
        return False
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="chain_test", description=__doc__.split("\n\n")[0])
    add_stack_args(ap)
    args = ap.parse_args(argv)
    if not check_stack_args(args, "chain_test"):
        return 1

    def on_signal(signum, _frame):
        raise ChainFailure(f"interrupted by signal {signum}")

    def on_alarm(_signum, _frame):
        raise ChainFailure(f"the whole test ran past {TOTAL_LIMIT_S + 5} s")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_LIMIT_S + 5)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="inferd-chain-"))
    procs = Processes(tmp)
    failure = run_guarded(args, tmp, procs, lambda webhook: run(args, tmp, procs, webhook))[1]
    print("\ntimeline:\n" + log.summary())
    if failure is not None:
        report_failure("chain_test", tmp, failure)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nchain_test: OK in {log.elapsed():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
