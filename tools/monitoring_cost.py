"""What monitoring costs: the same inferd binary served side by side with `[monitoring] enabled = false` and
with monitoring on (metrics, drift windows, feedback memory), with and without the prediction log (every
prediction, and a 10% sample), each loaded in turn by `wrk` on 127.0.0.1 in rotating order, round after
round; the throughput ratio against "off" is reported per workload (median over rounds, so a noisy neighbour
hits every side alike).

    python tools/monitoring_cost.py --inferd target/release/inferd [--rounds 5] [--seconds 5]

Bounded: rounds × workloads × 2 runs of `seconds` each; every process it starts is stopped by PID.
Needs `wrk` (apt-get install wrk).
"""
import argparse
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r")
wrk.body = f:read("*a")
f:close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(inferd: str, workdir: pathlib.Path, name: str, monitoring: bool, log_rate: float | None) -> tuple:
    port = free_port()
    config = workdir / f"{name}.toml"
    lines = [
        "[server]", f"port = {port}", "max_in_flight = 4096",
        "[models]", f"repository = {json.dumps(str(ROOT / 'models'))}", 'default = "breast_cancer"',
        "[monitoring]", f"enabled = {'true' if monitoring else 'false'}",
    ]
    if log_rate is not None:
        lines += ["[monitoring.prediction_log]", f"path = {json.dumps(str(workdir / (name + '.jsonl')))}",
                  f"sample_rate = {log_rate}", "max_bytes = 1073741824"]
    config.write_text("\n".join(lines) + "\n")
    log = open(workdir / f"{name}.log", "w")
    process = subprocess.Popen([inferd, "serve", "--config", str(config)], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=1) as r:
                if r.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.1)
    process.terminate()
    sys.exit(f"{name}: the server did not become ready")


def wrk(url: str, script: pathlib.Path, seconds: int, connections: int, threads: int) -> float:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out:
        sys.exit(f"non-2xx answers under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inferd", default=str(ROOT / "target/release/inferd"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    fixture = json.loads((ROOT / "models/breast_cancer/1/fixtures.json").read_text())
    inputs = [c["input"] for c in fixture["cases"]]
    workloads = {"1 row": 1, "32 rows": 32}

    sides = {  # name: (monitoring, prediction log sample rate or None)
        "off": (False, None),
        "on, no log": (True, None),
        "on, log 10%": (True, 0.1),
        "on, log all": (True, 1.0),
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        servers = {}
        results = {}
        try:
            for i, (side, (monitoring, log_rate)) in enumerate(sides.items()):
                servers[side] = start_server(args.inferd, workdir, f"side{i}", monitoring, log_rate)
            for workload, rows in workloads.items():
                body = workdir / f"body-{rows}.json"
                body.write_text(json.dumps({"instances": [inputs[i % len(inputs)] for i in range(rows)]}))
                script = workdir / f"post-{rows}.lua"
                script.write_text(WRK_SCRIPT.format(body=body))
                rates = {side: [] for side in sides}
                ratios = {side: [] for side in sides}
                names = list(sides)
                for round_ in range(args.rounds):
                    # Rotate the order, so drift in the machine's load hits every side alike.
                    order = names[round_ % len(names):] + names[:round_ % len(names)]
                    measured = {}
                    for side in order:
                        measured[side] = wrk(servers[side][1] + "/predict", script, args.seconds,
                                             args.connections, args.threads)
                        rates[side].append(measured[side])
                    for side in names:
                        ratios[side].append(measured[side] / measured["off"])
                    print(f"{workload:8s} round {round_ + 1}: " + "   ".join(
                        f"{side} {measured[side]:7.0f}/s ({ratios[side][-1]:.3f})" for side in names), flush=True)
                results[workload] = {side: (statistics.median(rates[side]), statistics.median(ratios[side]))
                                     for side in names}
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)
    print()
    print(f"{'workload':10s}" + "".join(f"{side:>22s}" for side in sides))
    for workload, by_side in results.items():
        print(f"{workload:10s}" + "".join(f"{rate:>12.0f}/s {ratio:7.3f}" for rate, ratio in by_side.values()))
    print(f"(req/s and on/off ratio, medians of {args.rounds} rounds of {args.seconds} s per side; "
          f"{os.cpu_count()} CPUs; wrk -t{args.threads} -c{args.connections}; breast_cancer, 30 features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
