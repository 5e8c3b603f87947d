#!/usr/bin/env python3
"""Fleet drift on a real Prometheus (DESIGN §10, issue 11): the recording rules of deploy/prometheus/rules.yml
see the drift of all replicas' traffic together, which no single replica can see.

    python3 tools/fleet_check.py --inferd target/debug/inferd [--keep-logs DIR]

Starts three inferd processes (bundled models, default breast_cancer) and Prometheus (deploy/'s rules and
alerts, 1 s scrape and evaluation, every `for:` 2 s) on free loopback ports. Then it sends each replica an
unequal share of training rows — 1,200, 600 and 200 — with "mean radius" shifted by +3 training standard
deviations on none, all and half of them (so 35 % of the fleet's traffic), and checks:

  1. inferd:feature_drift_psi:fleet for every feature, and inferd:prediction_drift_psi:fleet, equal the PSI
     computed here offline (DESIGN §6: bins of reference.json, shares floored at 1e-4) over all 2,000 rows
     together (and the labels the replicas answered), within TOLERANCE. The only difference allowed is
     increase()'s extrapolation: each replica's counters are extrapolated to the end of the 1 h range by up
     to one scrape interval out of the time they cover, by a factor that differs a little between replicas,
     which tilts the fleet's shares. The check prints each replica's factor (its recorded count over the rows
     it was sent) and the resulting difference;
  2. InferdFleetFeatureDrift{feature="mean radius", severity="critical"} fires, and no fleet alert names any
     other feature;
  3. the unshifted features' fleet PSI stays below the model's psi_warning.

Standard library only (the chain test's helpers). Exits 0 when everything holds, 1 with the failed check
otherwise; every process it started is stopped by PID. Bounded: about 2 minutes.
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import pathlib
import shutil
import signal
import sys
import tempfile
import time

import chain_test as chain
from chain_test import ChainFailure, Processes, Prometheus, http, log, wait_for

ROOT = chain.ROOT
MODEL = chain.MODEL
SHIFTED = chain.SHIFTED
SHIFT_STDS = 3.0
# rows sent to each replica, and the share of them with SHIFTED shifted
TRAFFIC = [(1200, 0.0), (600, 1.0), (200, 0.5)]
FLOOR = 1e-4
TOLERANCE = 0.02  # relative difference allowed between the recorded fleet PSI and the offline PSI
# increase() extrapolates each series by up to about one scrape interval (1 s) past its last sample, so a
# replica's recorded count is off by at most 1 s / the time its series cover. After COVERED_S seconds that is
# under 2 %, and the replicas' factors differ by less.
COVERED_S = 60
LIMIT_S = 150
FLEET_ALERT = "InferdFleetFeatureDrift"


# --- offline PSI (DESIGN §6) ----------------------------------------------------------------------------------
def bin_of(profile: dict, value) -> int:
    """searchsorted-left for numbers, category index or `other` for categories; missing last."""
    if profile["kind"] == "number":
        return len(profile["edges"]) + 1 if value is None else bisect.bisect_left(profile["edges"], value)
    categories = profile["categories"]
    if value is None:
        return len(categories) + 1
    return categories.index(value) if value in categories else len(categories)


def psi(profile: dict, values: list) -> float:
    expected = profile["ratios"] + [profile["missing"]]
    counts = [0] * len(expected)
    for v in values:
        counts[bin_of(profile, v)] += 1
    total = len(values)
    return sum((max(c / total, FLOOR) - max(e, FLOOR)) * math.log(max(c / total, FLOOR) / max(e, FLOOR))
               for c, e in zip(counts, expected))


# --- the stack ------------------------------------------------------------------------------------------------
def start(args, tmp: pathlib.Path, procs: Processes) -> tuple[list, Prometheus]:
    ports = set()
    while len(ports) < len(TRAFFIC) + 2:
        ports.add(chain.free_port())
    ports = sorted(ports)
    inferd_ports, prom_port, am_port = ports[:len(TRAFFIC)], ports[-2], ports[-1]
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    text = chain.rewrite_prometheus((args.deploy / "prometheus/prometheus.yml").read_text(), inferd_ports[0], am_port)
    one = f'targets: ["127.0.0.1:{inferd_ports[0]}"]'
    if one not in text:
        raise ChainFailure(f"prometheus.yml: expected one static target line `{one}` to list the replicas in")
    text = text.replace(one, "targets: [" + ", ".join(f'"127.0.0.1:{p}"' for p in inferd_ports) + "]")
    (prom_dir / "prometheus.yml").write_text(text)
    for name in ("rules.yml", "alerts.yml"):
        (prom_dir / name).write_text(chain.rewrite_rules((args.deploy / "prometheus" / name).read_text()))
    chain.check_config([args.promtool, "check", "config", prom_dir / "prometheus.yml"], "promtool check config")

    repo = (ROOT / "models").resolve()
    bases = []
    for i, port in enumerate(inferd_ports):
        config = tmp / f"inferd-{i}.toml"
        config.write_text(f'[server]\naddr = "127.0.0.1"\nport = {port}\n\n'
                          f'[models]\nrepository = {json.dumps(str(repo))}\ndefault = "{MODEL}"\n')
        procs.start(f"inferd-{i}", [args.inferd, "serve", "--config", config], cwd=tmp)
        bases.append(f"http://127.0.0.1:{port}")
    (tmp / "prometheus-data").mkdir()
    procs.start("prometheus", [args.prometheus, f"--config.file={prom_dir / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"])
    prom = Prometheus(prom_port)
    for base in bases:
        wait_for(f"{base}/health/ready == 200", lambda b=base: (http("GET", f"{b}/health/ready", timeout=2)[0] == 200,
                                                              None), 60, procs)
    wait_for("Prometheus ready", lambda: (http("GET", f"{prom.base}/-/ready", timeout=2)[0] == 200, None), 30, procs)

    # Every replica scraped with its bins at 0 before any traffic: increase() then sees every observation.
    def scraped():
        up = prom.query('up{job="inferd"} == 1')
        bins = prom.query(f'count(inferd_feature_bin_total{{model="{MODEL}"}}) by (instance)')
        return len(up) == len(bases) and len(bins) == len(bases), (len(up), len(bins))
    wait_for("every replica scraped, with its bin counters", scraped, 30, procs)
    log(f"{len(bases)} replicas ready and scraped")
    return bases, prom, time.monotonic()


# --- the check ------------------------------------------------------------------------------------------------
def run(args, tmp: pathlib.Path, procs: Processes):
    names, rows = chain.training_rows()
    profiles = json.loads((ROOT / "models" / MODEL / "1/reference.json").read_text())
    bases, prom, scraped_at = start(args, tmp, procs)
    column = [r[SHIFTED] for r in rows]
    mean = sum(column) / len(column)
    std = math.sqrt(sum((v - mean) ** 2 for v in column) / len(column))

    sent, labels, offset = [], [], 0
    for base, (count, share) in zip(bases, TRAFFIC):
        batch = [dict(rows[(offset + i) % len(rows)]) for i in range(count)]
        offset += count
        for r in batch[:round(count * share)]:
            r[SHIFTED] += SHIFT_STDS * std
        for start_at in range(0, count, chain.CHUNK):
            chunk = batch[start_at:start_at + chain.CHUNK]
            status, body = http("POST", f"{base}/predict", {"instances": chunk}, timeout=30)
            if status != 200:
                raise ChainFailure(f"POST {base}/predict answered {status}: {str(body)[:300]}")
            labels.extend(p["label"] for p in body["predictions"])
        sent.extend(batch)
        log(f"{base}: {count} rows, {share:.0%} with {SHIFTED!r} + {SHIFT_STDS:g} std")
    total = len(sent)
    expected = {n: psi(profiles["features"][n], [r[n] for r in sent]) for n in names}
    expected_prediction = psi(profiles["prediction"], labels)

    # The rules see the last scrape of every replica (1 s scrapes, 1 s evaluations).
    def recorded_all():
        got = prom.query(f'inferd:feature_observations:fleet1h{{model="{MODEL}", feature="{SHIFTED}"}}')
        value = float(got[0]["value"][1]) if got else 0.0
        return value >= total, value
    wait_for(f"the fleet's {total} observations recorded", recorded_all, 30, procs)
    wait = scraped_at + COVERED_S - time.monotonic()
    if wait > 0:
        log(f"waiting {wait:.0f} s: the counters' series cover {COVERED_S} s, so increase()'s extrapolation is small")
        time.sleep(wait)
    fleet = chain.by_feature(prom.query(f'inferd:feature_drift_psi:fleet{{model="{MODEL}"}}'))
    fleet_prediction = prom.query(f'inferd:prediction_drift_psi:fleet{{model="{MODEL}"}}')
    factors = {}
    for i, (base, (count, _)) in enumerate(zip(bases, TRAFFIC)):
        instance = base.removeprefix("http://")
        got = prom.query(f'sum(increase(inferd_feature_bin_total{{model="{MODEL}", feature="{SHIFTED}", '
                         f'instance="{instance}"}}[1h]))')
        factors[f"inferd-{i}"] = float(got[0]["value"][1]) / count if got else float("nan")
    log("increase() over the rows sent, per replica (the extrapolation): "
        + ", ".join(f"{k} {v:.4f}" for k, v in factors.items()))

    missing = [n for n in names if n not in fleet]
    if missing or not fleet_prediction:
        raise ChainFailure(f"no fleet PSI recorded for {missing[:5]} (prediction: {bool(fleet_prediction)})")
    worst = max(names, key=lambda n: abs(fleet[n] - expected[n]) / max(expected[n], 0.01))
    print(f"\n{'feature':<28} {'fleet PSI':>10} {'offline PSI':>12} {'difference':>11}")
    for n in dict.fromkeys([SHIFTED, worst] + names[:3]):
        print(f"{n:<28} {fleet[n]:>10.5f} {expected[n]:>12.5f} {fleet[n] - expected[n]:>+11.5f}")
    recorded_prediction = float(fleet_prediction[0]["value"][1])
    print(f"{'_prediction':<28} {recorded_prediction:>10.5f} {expected_prediction:>12.5f} "
          f"{recorded_prediction - expected_prediction:>+11.5f}\n")
    for n in names:
        if abs(fleet[n] - expected[n]) > TOLERANCE * max(expected[n], 0.01):
            raise ChainFailure(f"fleet PSI of {n!r} is {fleet[n]:.5f}, offline {expected[n]:.5f}: more than "
                               f"{TOLERANCE:.0%} apart")
    if abs(recorded_prediction - expected_prediction) > TOLERANCE * max(expected_prediction, 0.01):
        raise ChainFailure(f"fleet prediction PSI {recorded_prediction:.5f}, offline {expected_prediction:.5f}")
    log(f"fleet PSI equals the offline PSI of all {total} rows for all {len(names)} features and the predictions "
        f"(within {TOLERANCE:.0%}; {SHIFTED!r}: {fleet[SHIFTED]:.4f} vs {expected[SHIFTED]:.4f})")

    warning = float(prom.query(f'max(inferd_drift_threshold{{model="{MODEL}", severity="warning"}})')[0]["value"][1])
    loud = {n: round(fleet[n], 4) for n in names if n != SHIFTED and fleet[n] >= warning}
    if loud:
        raise ChainFailure(f"unshifted features at or above psi_warning {warning}: {loud}")

    def fleet_alerts():
        return [a for a in prom.alerts() if a["labels"].get("alertname") == FLEET_ALERT]

    def critical_firing():
        alerts = fleet_alerts()
        hit = [a for a in alerts if a["labels"].get("feature") == SHIFTED and a["labels"].get("severity") == "critical"
               and a.get("state") == "firing"]
        return bool(hit), [(a["labels"].get("feature"), a["labels"].get("severity"), a.get("state")) for a in alerts]
    wait_for(f'{FLEET_ALERT}{{feature="{SHIFTED}", severity="critical"}} firing', critical_firing, 30, procs)
    wrong = [a["labels"].get("feature") for a in fleet_alerts() if a["labels"].get("feature") != SHIFTED]
    if wrong:
        raise ChainFailure(f"{FLEET_ALERT} names unshifted features: {wrong}")
    log(f"{FLEET_ALERT} critical firing for {SHIFTED!r} only; unshifted features below psi_warning {warning}")
    # What each replica sees alone: its own window (1000 rows; until full, what it holds), no fleet mix.
    alone = prom.query(f'inferd_feature_drift_psi{{model="{MODEL}", feature="{SHIFTED}"}}')
    log(f"per replica, {SHIFTED!r} drift window PSI: "
        + ", ".join(f"{r['metric'].get('instance')} {float(r['value'][1]):.4f}" for r in alone)
        + f"; per-replica {chain.ALERT} alerts: {len(chain.feature_alerts(prom.alerts()))}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fleet_check", description=__doc__.split("\n\n")[0])
    chain.add_stack_args(ap)
    args = ap.parse_args(argv)
    if not chain.check_stack_args(args, "fleet_check"):
        return 1

    def on_alarm(_signum, _frame):
        raise ChainFailure(f"the whole check ran past {LIMIT_S} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(LIMIT_S)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="inferd-fleet-"))
    procs = Processes(tmp)
    try:
        run(args, tmp, procs)
        failure = None
    except ChainFailure as e:
        failure = e
    finally:
        procs.stop_all()
        signal.alarm(0)
    if args.keep_logs:
        shutil.copytree(tmp, args.keep_logs, dirs_exist_ok=True)
    if failure is not None:
        print(f"\nfleet_check: FAILED: {failure}\nlogs: {tmp}", file=sys.stderr)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nfleet_check: OK in {log.elapsed():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
