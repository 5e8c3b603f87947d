#!/usr/bin/env python3
"""A monitoring demo on real processes: inferd → Prometheus → Alertmanager → a webhook receiver, driven with
realistic traffic for a few minutes, then a PNG of the Grafana dashboard rendered from the live Prometheus.

    python3 tools/demo_monitoring.py --inferd target/debug/inferd --minutes 6 --out docs/img/dashboard.png

Starts inferd on the bundled models (prediction log in a temporary directory), Prometheus and Alertmanager
with copies of deploy/'s configuration (scrape and evaluation every 2 s, every alert `for:` 2 s, as
tools/chain_test.py does; its helpers are imported, not copied) and a webhook receiver. Then, for --minutes:

  - a steady stream to breast_cancer: about --rate requests per second (Poisson arrivals), 1–20 rows each,
    drawn from tests/data/train/breast_cancer.csv, each row with an id, over /predict and the model's named
    routes; for most ids (--feedback-share) POST /feedback later sends the true "diagnosis" label;
  - the first half in distribution, the second half with "mean radius" shifted by +1 training standard
    deviation (every other feature untouched), so that feature's drift rises to warning and critical;
  - a few wine and diabetes requests; a trickle of bad requests (400 malformed JSON / a string for a number,
    422 wrong shape, 404 unknown model) and of feedback for unknown ids.

Then, with the traffic still running (the panels end on live rates, like a screenshot of a running service),
tools/render_dashboard.py draws deploy/grafana/dashboards/inferd.json for breast_cancer version 1 over the
run's window into --out; the traffic stops, a summary is printed (requests sent by outcome, feedback matched,
alerts firing at the end) and every process started is stopped by PID, on failure and Ctrl-C too.

Standard library only (render_dashboard.py needs matplotlib). Exit status: 0 done; 1 failed (the message
says where); 2 the dashboard was written but some panel queries failed. Bounded: --minutes plus about 2 min.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import chain_test as ct  # noqa: E402  (Processes, Webhook, start_stack, http, wait_for, …)

ROOT = ct.ROOT
MODEL = ct.MODEL  # breast_cancer
TARGET = "diagnosis"
SHIFTED = ct.SHIFTED  # "mean radius"
SHIFT_STDS = 1.0
INTERVAL_S = 2  # scrape / evaluation / alert group interval
SETTLE_S = 3 * INTERVAL_S  # before and after the traffic: a few scrapes and rule evaluations
ROUTES = ("/predict", f"/models/{MODEL}/predict", f"/models/{MODEL}/versions/1/predict")


class DemoFailure(ct.ChainFailure):
    pass


# --- data ---------------------------------------------------------------------------------------------------------
def manifest_features(model: str) -> list[tuple[str, str]]:
    manifest = tomllib.loads((ROOT / "models" / model / "1" / "inferd.toml").read_text())
    return [(f["name"], f.get("type", "number")) for f in manifest["features"]]


def instances(model: str) -> list[dict]:
    """Rows of tests/data/train/<model>.csv as request instances (the manifest's features, typed; an empty cell
    is sent as null, a missing value the manifest imputes)."""
    def value(text, kind):
        return None if text == "" else float(text) if kind == "number" else text
    features = manifest_features(model)
    with (ROOT / "tests/data/train" / f"{model}.csv").open(newline="") as fh:
        return [{n: value(r[n], t) for n, t in features} for r in csv.DictReader(fh)]


def breast_cancer() -> tuple[list[dict], list[str], float]:
    """(instances, true labels in the same order, training standard deviation of SHIFTED)."""
    _, rows = ct.training_rows()
    with (ROOT / "tests/data/train" / f"{MODEL}.csv").open(newline="") as fh:
        labels = [r[TARGET] for r in csv.DictReader(fh)]
    if len(labels) != len(rows):
        raise DemoFailure(f"{MODEL}.csv: {len(rows)} rows but {len(labels)} {TARGET!r} values")
    x = [r[SHIFTED] for r in rows]
    mean = sum(x) / len(x)
    return rows, labels, math.sqrt(sum((v - mean) ** 2 for v in x) / len(x))


# --- traffic ------------------------------------------------------------------------------------------------------
class Traffic:
    """Sends requests and tallies what came back."""

    def __init__(self, rng: random.Random, feedback_share: float):
        self.base = None  # inferd's URL, once it runs
        self.rng = rng
        self.feedback_share = feedback_share
        self.rows, self.labels, std = breast_cancer()
        self.shift = SHIFT_STDS * std  # added to SHIFTED once `shifted` is set
        self.shifted = False
        self.others = {m: instances(m) for m in ("wine", "diabetes")}
        self.sent = collections.Counter()  # (kind, status) -> requests
        self.rows_sent = collections.Counter()  # "in distribution" / "shifted" -> breast_cancer rows answered
        self.pending = []  # (due, id, true label) for feedback
        self.feedback = collections.Counter()  # matched / unknown / invalid, as inferd answered
        self.seq = 0

    def post(self, kind: str, path: str, body, raw: bytes | None = None):
        if raw is not None:  # a body that is not JSON: http() only sends JSON
            req = urllib.request.Request(self.base + path, data=raw, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            except (urllib.error.URLError, OSError):
                status = 0
            self.sent[(kind, status)] += 1
            return status, None
        status, answer = ct.http("POST", self.base + path, body, timeout=10)
        self.sent[(kind, status)] += 1
        return status, answer

    def breast_cancer(self, now: float):
        n = self.rng.randint(1, 20)
        picks = [self.rng.randrange(len(self.rows)) for _ in range(n)]
        batch, ids = [], []
        for i in picks:
            row = dict(self.rows[i])
            if self.shifted:
                row[SHIFTED] += self.shift
            self.seq += 1
            batch.append(row)
            ids.append(f"bc-{self.seq:06d}")
        route = self.rng.choices(ROUTES, weights=(6, 3, 1))[0]
        status, answer = self.post(f"{MODEL} predict", route, {"instances": batch, "ids": ids})
        if status != 200:
            raise DemoFailure(f"POST {route} ({n} rows) answered {status}: {str(answer)[:300]}")
        self.rows_sent["shifted" if self.shifted else "in distribution"] += n
        for i, id_ in zip(picks, ids):
            if self.rng.random() < self.feedback_share:
                self.pending.append((now + self.rng.uniform(1, 15), id_, self.labels[i]))

    def other_model(self):
        model = self.rng.choice(sorted(self.others))
        rows = self.others[model]
        batch = [rows[self.rng.randrange(len(rows))] for _ in range(self.rng.randint(1, 5))]
        status, answer = self.post(f"{model} predict", f"/models/{model}/predict", {"instances": batch})
        if status != 200:
            raise DemoFailure(f"POST /models/{model}/predict answered {status}: {str(answer)[:300]}")

    def bad_request(self):
        """A client mistake; the status is whatever inferd answers (tallied), only a 5xx or no answer fails."""
        row = dict(self.rng.choice(self.rows))
        kind = self.rng.choices(["malformed", "non-finite", "shape", "unknown model"], weights=(2, 3, 3, 2))[0]
        if kind == "malformed":
            status, _ = self.post("bad: malformed JSON", "/predict", None, raw=b'{"instances": [{"mean radius": 1')
        elif kind == "non-finite":
            row[SHIFTED] = "n/a"  # a string where a number belongs
            status, _ = self.post("bad: non-number value", f"/models/{MODEL}/predict", {"instances": [row]})
        elif kind == "shape":
            status, _ = self.post("bad: wrong shape", "/predict", {"rows": [row]})
        else:
            status, _ = self.post("bad: unknown model", "/models/breast-cancer/predict", {"instances": [row]})
        if status == 0 or status >= 500:
            raise DemoFailure(f"a bad request ({kind}) answered {status}, expected a 4xx")

    def send_feedback(self, now: float, everything: bool = False, stray: bool = False):
        due = [p for p in self.pending if everything or p[0] <= now]
        if not due and not stray:
            return
        self.pending = [p for p in self.pending if not (everything or p[0] <= now)]
        items = [{"id": id_, "label": label} for _, id_, label in due]
        if stray:  # feedback for a prediction this server never made (another replica, a typo)
            items.append({"id": f"bc-x{self.rng.randrange(10 ** 6):06d}", "label": "benign"})
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            status, answer = self.post("feedback", "/feedback", {"items": chunk})
            if status != 200 or not isinstance(answer, dict):
                raise DemoFailure(f"POST /feedback ({len(chunk)} items) answered {status}: {str(answer)[:300]}")
            self.feedback["matched"] += answer.get("matched", 0)
            self.feedback["unknown"] += len(answer.get("unknown_ids", []))
            self.feedback["invalid"] += len(answer.get("invalid", []))


def drive(traffic: Traffic, shift_after: float, rate: float, stop: threading.Event):
    """Poisson arrivals at `rate` per second until `stop` is set; shifted from `shift_after` s on."""
    start = time.monotonic()
    next_feedback = start + INTERVAL_S
    next_report = start + 30
    t = start
    while not stop.is_set():
        t += traffic.rng.expovariate(rate)
        if stop.wait(max(0.0, t - time.monotonic())):
            break
        now = time.monotonic()
        if not traffic.shifted and now - start >= shift_after:
            traffic.shifted = True
            ct.log(f"second half: {SHIFTED!r} + {SHIFT_STDS:g} std (+{traffic.shift:.3f}) from now on")
        u = traffic.rng.random()
        if u < 0.04:
            traffic.other_model()
        elif u < 0.065:
            traffic.bad_request()
        else:
            traffic.breast_cancer(now)
        if now >= next_feedback:
            traffic.send_feedback(now, stray=traffic.rng.random() < 0.08)
            next_feedback = now + INTERVAL_S
        if now >= next_report:
            ct.log(f"{sum(traffic.sent.values())} requests, {sum(traffic.rows_sent.values())} {MODEL} rows, "
                   f"{traffic.feedback['matched']} feedback matched")
            next_report = now + 30


# --- results ------------------------------------------------------------------------------------------------------
def firing_alerts(prom: ct.Prometheus) -> list[str]:
    out = []
    for a in prom.alerts():
        if a.get("state") != "firing":
            continue
        lab = a.get("labels", {})
        where = ", ".join(f"{k}={lab[k]}" for k in ("model", "feature") if lab.get(k))
        out.append(f"{lab.get('alertname')}/{lab.get('severity')}" + (f" ({where})" if where else ""))
    return sorted(out)


def scalar(prom: ct.Prometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def render(args, prom: ct.Prometheus, window_s: float) -> int:
    argv = [sys.executable, str(ROOT / "tools/render_dashboard.py"), "--prometheus", prom.base,
            "--minutes", f"{window_s / 60:.2f}", "--out", str(args.out), "--model", MODEL, "--version", "1",
            "--scrape-interval", str(INTERVAL_S)]
    ct.log("rendering: " + " ".join(argv[1:]))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    for line in (proc.stdout + proc.stderr).strip().splitlines():
        print("    " + line, flush=True)
    if proc.returncode == 2 or not args.out.is_file():
        raise DemoFailure(f"render_dashboard.py failed (status {proc.returncode})")
    return proc.returncode


def run(args, tmp: pathlib.Path, procs: ct.Processes, webhook: ct.Webhook) -> dict:
    traffic = Traffic(random.Random(args.seed), args.feedback_share)  # the data first: fail before starting
    log_path = tmp / "predictions.jsonl"
    extra = f"\n[monitoring.prediction_log]\npath = {json.dumps(str(log_path))}\n"
    _, base, prom = ct.start_stack(args, tmp, procs, webhook, interval=f"{INTERVAL_S}s", inferd_extra=extra)
    traffic.base = base

    window_start = time.time() - SETTLE_S  # a few idle scrapes before the traffic
    time.sleep(SETTLE_S)
    seconds = args.minutes * 60
    ct.log(f"traffic for {args.minutes:g} min at ~{args.rate:g} requests/s")
    # The traffic runs in a thread and goes on while the dashboard renders, so that the panels end on live
    # values (a rate over the last seconds), as a screenshot of a running service would.
    stop = threading.Event()
    errors = []

    def worker():
        try:
            drive(traffic, seconds / 2, args.rate, stop)
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)
    thread = threading.Thread(target=worker, name="traffic", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not errors:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            procs.check_alive()
        if not errors:
            status = render(args, prom, time.time() - window_start)
    finally:
        stop.set()
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    ct.log("traffic stopped")
    traffic.send_feedback(time.monotonic(), everything=True)  # what was still due
    time.sleep(SETTLE_S)  # the last counters scraped
    procs.check_alive()
    result = {
        "traffic": traffic,
        "render_status": status,
        "alerts": firing_alerts(prom),
        "webhook": collections.Counter(p for _, p, _ in webhook.snapshot()),
        "prom_matched": scalar(prom, f'sum(inferd_feedback_total{{model="{MODEL}", outcome="matched"}})'),
        "accuracy": scalar(prom, f'inferd_live_accuracy{{model="{MODEL}"}}'),
        "baseline": scalar(prom, f'inferd_model_baseline{{model="{MODEL}", metric="accuracy"}}'),
        "levels": {r["metric"]["feature"]: float(r["value"][1])
                   for r in prom.query(f'inferd_drift_level{{model="{MODEL}"}} > 0')},
        "logged": sum(1 for _ in log_path.open()) if log_path.exists() else 0,
    }
    return result


def summary(r: dict, args) -> str:
    t: Traffic = r["traffic"]
    by_kind = collections.defaultdict(collections.Counter)
    for (kind, status), n in t.sent.items():
        by_kind[kind][status] += n
    lines = [f"requests sent: {sum(t.sent.values())}"]
    for kind in sorted(by_kind):
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(by_kind[kind].items()))
        lines.append(f"  {kind:<24} {codes}")
    lines.append(f"{MODEL} rows answered: {t.rows_sent['in distribution']} in distribution, "
                 f"{t.rows_sent['shifted']} with {SHIFTED!r} + {SHIFT_STDS:g} std")
    sent_ids = sum(t.rows_sent.values())
    counted = "none" if r["prom_matched"] is None else f"{r['prom_matched']:.0f}"
    lines.append(f"feedback: {t.feedback['matched']} matched of {sent_ids} ids "
                 f"({t.feedback['matched'] / max(1, sent_ids):.0%}), {t.feedback['unknown']} unknown ids, "
                 f"{t.feedback['invalid']} invalid (Prometheus: {counted} matched)")
    if r["accuracy"] is not None:
        lines.append(f"live accuracy at the end: {r['accuracy']:.3f} (baseline {r['baseline']:.3f})")
    levels = ", ".join(f"{f}={'critical' if v >= 2 else 'warning'}" for f, v in sorted(r["levels"].items()))
    lines.append(f"drift level now: {levels or 'all features 0'}")
    lines.append(f"prediction log records written: {r['logged']}")
    lines.append(f"alerts firing at the end ({len(r['alerts'])}):")
    lines += [f"  {a}" for a in r["alerts"]] or ["  none"]
    lines.append("webhook notifications: " + (", ".join(f"{p}: {n}" for p, n in sorted(r["webhook"].items()))
                                             or "none"))
    size = args.out.stat().st_size
    lines.append(f"dashboard: {args.out} ({size / 1024:.0f} KiB)"
                 + ("" if r["render_status"] == 0 else " — some panel queries failed, see above"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="demo_monitoring", description=__doc__.split("\n\n")[0])
    ct.add_stack_args(ap)
    ap.add_argument("--minutes", type=float, default=6, help="how long traffic runs (default 6)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "docs/img/dashboard.png", help="PNG to write")
    ap.add_argument("--rate", type=float, default=4, help="requests per second (default 4)")
    ap.add_argument("--feedback-share", type=float, default=0.85,
                    help="share of predictions that get their true label back (default 0.85)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    if not ct.check_stack_args(args, "demo_monitoring"):
        return 1
    if not 0.1 <= args.minutes <= 60 or args.rate <= 0:
        print("demo_monitoring: --minutes must lie in [0.1, 60] and --rate be positive", file=sys.stderr)
        return 1
    args.out = args.out.resolve()
    limit = args.minutes * 60 + 240  # startup, settling and rendering included
    ct.log = ct.Timeline(limit_s=limit)  # chain_test's helpers (wait_for, Processes) read the module's log

    def on_signal(signum, _frame):
        raise DemoFailure(f"interrupted by signal {signum}")

    def on_alarm(_signum, _frame):
        raise DemoFailure(f"the demo ran past {limit:.0f} s")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even when started with SIGINT ignored
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(limit))

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="inferd-demo-"))
    procs = ct.Processes(tmp)
    result, failure = ct.run_guarded(args, tmp, procs, lambda webhook: run(args, tmp, procs, webhook))
    if failure is not None:
        ct.report_failure("demo_monitoring", tmp, failure)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + summary(result, args))
    print(f"\ndemo_monitoring: done in {ct.log.elapsed():.0f} s")
    return 2 if result["render_status"] else 0


if __name__ == "__main__":
    sys.exit(main())
