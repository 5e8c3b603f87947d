#!/usr/bin/env python3
"""Soak under overload (issue 10): inferd loaded at `--factor` (3) times its measured capacity for `--duration`
seconds on 127.0.0.1, and what it answered.

    python3 bench/overload.py [--bin target/release/inferd] [--duration 60] [--factor 3] [--quick]

What it does, in order (everything in a temporary folder, removed at the end):
1. starts inferd on a free port with the bundled `models/` (POST /predict: breast_cancer), monitoring on and
   no prediction log (the defaults), and the limits the scenario is about, printed: `max_in_flight`,
   `request_timeout_ms`, `queue_capacity`;
2. pins the server alone to one core and everything else (`oha`, this script, its probes) to another, so the
   load generator does not take the server's CPU (on a machine with fewer than 2 cores nothing is pinned);
3. nominal capacity: `oha` closed loop at `--nominal-connections` for `--nominal-duration` seconds (after a
   short warm-up): answers per second and the p99 of the 200s;
4. overload: `oha` open loop (`-q`) at factor × capacity with `--latency-correction`, over enough connections to
   carry that rate at 4× the nominal p99 (Little's law; `--connections` to choose), for `--duration` seconds,
   waiting for the requests in flight at the end (`-w`) so that every request sent has its answer counted;
   meanwhile GET /health/ready (every 0.5 s) and GET /metrics (every 2 s) on fresh connections, timed;
5. prints one table: answers by status, the rate offered, goodput (200/s) against nominal throughput, p99 of
   the 200s against nominal (measured from the send, and from the moment the open-loop schedule meant to
   send: what a client that does not wait for a free connection sees), resident memory before, after and
   after a pause, health probes, `inferd_rejected_total` by reason where the server has it; then the same
   answers per time slice, to show whether the overload drifts.

The rate actually offered is reported next to the target: `oha` sends over a fixed pool of HTTP/1.1 keep-alive
connections, one request at a time each, so it offers more than the server answers only as far as the server
answers quickly (429 / 503) instead of holding requests. A scheduled request that finds every connection busy
waits inside `oha`; the latency-corrected p99 counts that wait.

Exit status: 1 if the server died, if any request went unanswered on the client side (connection error or
timeout) or the server's count of 200s on /predict differs from the client's, or if a health probe failed;
2 for a usage or setup error.

Bounded: warm-up + nominal + overload + a pause (--quick: about 20 s in all, 60 s overload: about 90 s);
every request to 127.0.0.1; every process it starts is stopped by PID. Needs `oha` (cargo install --locked oha).
"""
import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import http.client

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = "breast_cancer"


def log(message: str) -> None:
    print(f"[overload] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list, q: float) -> float:
    """Nearest rank; NaN for no values."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def proc_status(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a process, MiB."""
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) / 1024 for key in ("VmRSS", "VmHWM")}


def process_cpu_s(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> dict:
    """CPU time the whole machine spent (all cores), from /proc/stat: in processes (user, nice, system), in
    interrupts (irq, softirq: loopback networking lands here too) and stolen by the hypervisor."""
    fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return {"processes": sum(fields[0:3]) / tick, "interrupts": (fields[5] + fields[6]) / tick,
            "steal": fields[7] / tick}


def listen_drops() -> int:
    """Connection attempts the kernel dropped because a listener's accept queue was full (TcpExt ListenDrops,
    machine-wide: on 127.0.0.1 during the run, ours)."""
    lines = [l.split() for l in pathlib.Path("/proc/net/netstat").read_text().splitlines() if l.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1])).get("ListenDrops", 0))


def own_cpu_s() -> float:
    """CPU time of this script and its waited-for children (oha)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def get(port: int, path: str, timeout: float = 5.0) -> tuple:
    """(status, body, seconds) of one GET on a fresh connection, as a probe makes it."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, body, time.monotonic() - started
    finally:
        connection.close()


def scrape(port: int) -> dict:
    """The counters the scenario compares: /predict answers by code, the handler-time histogram of the
    requests the model answered (bucket bound → cumulative count), rejections by reason (if the server has
    `inferd_rejected_total`; absent: None)."""
    _, body, _ = get(port, "/metrics", timeout=30)
    answered, handler, rejected = {}, {}, None
    for line in body.decode().splitlines():
        if line.startswith("inferd_request_duration_seconds_bucket{") and 'endpoint="/predict"' in line \
                and f'model="{MODEL}"' in line:
            bound = re.search(r'le="([^"]+)"', line).group(1)
            handler[float(bound)] = handler.get(float(bound), 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("inferd_requests_total{") and 'endpoint="/predict"' in line:
            code = re.search(r'code="(\d+)"', line).group(1)
            answered[code] = answered.get(code, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("inferd_rejected_total"):
            rejected = rejected or {}
            reason = re.search(r'reason="([^"]*)"', line)
            key = reason.group(1) if reason else "?"
            rejected[key] = rejected.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return {"answered": answered, "handler": handler, "rejected": rejected}


def delta(after: dict, before: dict) -> dict:
    return {k: int(after[k] - before.get(k, 0)) for k in after if after[k] - before.get(k, 0)}


def handler_p99_ms(after: dict, before: dict) -> float:
    """p99 of the time inside the server's handlers between two scrapes, as the histogram bucket bound (ms)
    that holds it: within a factor of 2 (the buckets double)."""
    counts = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = counts.get(math.inf, 0)
    if total <= 0:
        return float("nan")
    return min(bound for bound, n in counts.items() if n >= 0.99 * total) * 1e3


class Server:
    """inferd on a free port with the scenario's limits, alone on `core` (None: not pinned)."""

    def __init__(self, binary: str, workdir: pathlib.Path, args, core):
        self.port = free_port()
        self.limits = {
            "server.max_in_flight": args.max_in_flight,
            "server.request_timeout_ms": args.request_timeout_ms,
            "batching.queue_capacity": args.queue_capacity,
        }
        config = workdir / "inferd.toml"
        config.write_text("\n".join([
            "[server]", 'addr = "127.0.0.1"', f"port = {self.port}", f"max_in_flight = {args.max_in_flight}",
            f"request_timeout_ms = {args.request_timeout_ms}",
            "[models]", f"repository = {json.dumps(str(ROOT / 'models'))}", f'default = "{MODEL}"',
            "[batching]", f"queue_capacity = {args.queue_capacity}",
        ]) + "\n")
        self.log_path = workdir / "inferd.log"
        self.log = open(self.log_path, "w")
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_")}  # the config file rules
        self.process = subprocess.Popen([binary, "serve", "--config", str(config)], stdout=self.log,
                                        stderr=self.log, preexec_fn=pin, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"inferd exited at startup:\n{self.log_path.read_text()[-2000:]}")
            try:
                if get(self.port, "/health/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("inferd not ready after 60 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def memory(self) -> dict:
        return proc_status(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Probes(threading.Thread):
    """GET /health/ready every 0.5 s and /metrics every 2 s on fresh connections, until stopped."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.results = {"/health/ready": [], "/metrics": []}  # (ok, seconds, note)
        self.halt = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self.halt.wait(0.5):
            paths = ["/health/ready"] + (["/metrics"] if tick % 4 == 0 else [])
            tick += 1
            for path in paths:
                try:
                    status, _, seconds = get(self.port, path, timeout=5)
                    self.results[path].append((status == 200, seconds, str(status)))
                except OSError as error:
                    self.results[path].append((False, 5.0, type(error).__name__))

    def stop(self) -> dict:
        self.halt.set()
        self.join()
        return self.results


def oha(url: str, body: pathlib.Path, db: pathlib.Path, seconds: float, connections: int, rate=None) -> dict:
    """One `oha` run; every answer with a status lands in `db` (sqlite, one row per request: start, scheduled
    start, end, status), the summary (client-side errors included) comes back as JSON."""
    command = ["oha", "-z", f"{seconds}s", "-c", str(connections), "-w", "-t", "30s", "--no-tui",
               "--output-format", "json", "--db-url", str(db), "-m", "POST", "-H", "content-type: application/json",
               "-D", str(body)]
    if rate is not None:
        command += ["-q", f"{rate:.0f}", "--latency-correction"]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 300)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed ({out.returncode}): {out.stderr[-2000:]}")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout)
    result["generator_cpu_s"] = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return result


def answers(db: pathlib.Path) -> list:
    """(start, scheduled start or start, end, status) of every answered request, by start, in seconds."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT start, COALESCE(start_latency_correction, start), end, status FROM oha ORDER BY start").fetchall()


def latencies(rows: list) -> tuple:
    """Sorted times of the 200s (s): from the send, and from the scheduled send."""
    ok = [r for r in rows if r[3] == 200]
    return sorted(end - start for start, _, end, _ in ok), sorted(end - scheduled for _, scheduled, end, _ in ok)


def measure(server: Server, url: str, body: pathlib.Path, db: pathlib.Path, seconds: float, connections: int,
            rate=None) -> dict:
    """One `oha` run against the server: what the client received, the CPU each side took, and the server's
    counters over the run."""
    before = scrape(server.port)
    machine, own, server_cpu, drops = machine_cpu_s(), own_cpu_s(), process_cpu_s(server.pid), listen_drops()
    run = oha(url, body, db, seconds, connections, rate)
    own_spent = own_cpu_s() - own
    alive = server.alive()
    server_spent = process_cpu_s(server.pid) - server_cpu if alive else float("nan")
    rows = answers(db)
    by_status = {}
    for *_, status in rows:
        by_status[status] = by_status.get(status, 0) + 1
    from_send, from_schedule = latencies(rows)
    after = scrape(server.port) if alive else None
    machine = {k: v - machine[k] for k, v in machine_cpu_s().items()}
    return {
        "seconds": seconds,
        "rows": rows,
        "by_status": by_status,
        "sent_per_s": len(rows) / seconds,
        "ok_per_s": by_status.get(200, 0) / seconds,
        "from_send": from_send,
        "p50_ms": percentile(from_send, 0.50) * 1e3,
        "p99_ms": percentile(from_send, 0.99) * 1e3,
        "p99_scheduled_ms": percentile(from_schedule, 0.99) * 1e3,
        "max_scheduled_ms": (from_schedule[-1] if from_schedule else float("nan")) * 1e3,
        "client_errors": run.get("errorDistribution", {}),
        "listen_drops": listen_drops() - drops,
        "server_cores": server_spent / seconds,
        "generator_cores": run["generator_cpu_s"] / seconds,
        "neighbours_cores": max(0.0, machine["processes"] - own_spent - server_spent) / seconds,
        "interrupt_cores": machine["interrupts"] / seconds,
        "steal_cores": machine["steal"] / seconds,
        "server_answered": delta(after["answered"], before["answered"]) if after else None,
        "handler_p99_ms": handler_p99_ms(after["handler"], before["handler"]) if after else float("nan"),
        "rejected": (delta(after["rejected"], before["rejected"] or {})
                     if after and after["rejected"] is not None else None),
    }


def checks(nominal: dict, overload: dict, probes: dict, alive: bool) -> list:
    """What makes the run fail, in words."""
    failures = [] if alive else ["the server died during the run (its exit status and log: above)"]
    for name, phase in (("nominal", nominal), ("overload", overload)):
        errors = phase["client_errors"]
        if errors:
            failures.append(f"{name}: {sum(errors.values())} requests without an answer on the client side ({errors};"
                            " oha's 'timeout' is a connect or a request timeout, it does not say which; the kernel "
                            f"dropped {phase['listen_drops']:,} connection attempts)")
        client = {str(code): n for code, n in phase["by_status"].items()}
        if phase["server_answered"] is not None and phase["server_answered"] != client:
            failures.append(f"{name}: the server counted these answers on /predict: {phase['server_answered']}; "
                            f"the client received {client}")
    for path, results in probes.items():
        failed = [note for ok, _, note in results if not ok]
        if failed or not results:
            failures.append(f"GET {path}: {len(failed)} of {len(results)} probes failed ({', '.join(failed[:5])})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target/release/inferd"), help="the inferd binary")
    parser.add_argument("--duration", type=float, default=60, help="overload, seconds")
    parser.add_argument("--nominal-duration", type=float, default=15, help="nominal capacity run, seconds")
    parser.add_argument("--factor", type=float, default=3, help="overload rate / nominal capacity")
    parser.add_argument("--quick", action="store_true", help="for CI: 5 s nominal, 10 s overload")
    parser.add_argument("--rows", type=int, default=32, help="records per request")
    parser.add_argument("--nominal-connections", type=int, default=16)
    parser.add_argument("--connections", type=int, help="overload connections (default: Little's law, see above)")
    parser.add_argument("--max-in-flight", type=int, default=32,
                        help="[server] max_in_flight: twice the nominal concurrency, which never reaches it")
    parser.add_argument("--request-timeout-ms", type=int, default=1000,
                        help="[server] request_timeout_ms: an answer later than this is worth less than a 503")
    parser.add_argument("--queue-capacity", type=int, default=16384, help="[batching] queue_capacity, rows")
    parser.add_argument("--no-pin", action="store_true", help="leave the server and the generator unpinned")
    parser.add_argument("--write", type=pathlib.Path, help="also write the printed report (markdown) here")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.nominal_duration = 10, 5
    if not pathlib.Path(args.bin).is_file():
        parser.error(f"no inferd binary at {args.bin}: build it (cargo build --release) or give --bin")
    if shutil.which("oha") is None:
        parser.error("oha not found (cargo install --locked oha)")

    cores = sorted(os.sched_getaffinity(0))
    server_core = load_core = None
    if len(cores) >= 2 and not args.no_pin:
        server_core, load_core = cores[-1], cores[0]
        os.sched_setaffinity(0, {load_core})  # this script, its probes and oha (a child) on the load core
    setup = {"pinning": f"server alone on core {server_core}; oha, this script and its probes on core {load_core}"
             if server_core is not None else "not pinned: server and load generator share every core",
             "warmup_s": 1 if args.quick else 3, "pause_s": 2 if args.quick else 5}

    fixture = json.loads((ROOT / f"models/{MODEL}/1/fixtures.json").read_text())
    inputs = [case["input"] for case in fixture["cases"]]
    with tempfile.TemporaryDirectory(prefix="inferd-overload-") as tmp:
        workdir = pathlib.Path(tmp)
        body = workdir / "body.json"
        body.write_text(json.dumps({"instances": [inputs[i % len(inputs)] for i in range(args.rows)]}))
        log(f"starting {args.bin} ({setup['pinning']})")
        server = Server(args.bin, workdir, args, server_core)
        setup["limits"] = server.limits
        url = f"http://127.0.0.1:{server.port}/predict"
        memory = {}
        try:
            memory["at start"] = server.memory()
            log(f"warm-up {setup['warmup_s']} s, then nominal: closed loop, {args.nominal_connections} connections, "
                f"{args.nominal_duration:g} s")
            oha(url, body, workdir / "warmup.db", setup["warmup_s"], args.nominal_connections)
            nominal = measure(server, url, body, workdir / "nominal.db", args.nominal_duration,
                              args.nominal_connections)
            if nominal["ok_per_s"] <= 0:
                raise RuntimeError(f"no 200 in the nominal run: {nominal['by_status']}")
            setup["target"] = args.factor * nominal["ok_per_s"]
            setup["connections"] = args.connections or min(4096, max(64, math.ceil(
                setup["target"] * 4 * nominal["p99_ms"] / 1e3)))
            log(f"nominal {nominal['ok_per_s']:,.0f} req/s, p99 {nominal['p99_ms']:.2f} ms; overload: open loop at "
                f"{setup['target']:,.0f} req/s ({args.factor:g}×) over {setup['connections']} connections, "
                f"{args.duration:g} s")
            memory["before"] = server.memory()
            probes = Probes(server.port)
            probes.start()
            try:
                overload = measure(server, url, body, workdir / "overload.db", args.duration, setup["connections"],
                                   rate=setup["target"])
            finally:
                probe_results = probes.stop()
            if server.alive():
                memory["after"] = server.memory()
                time.sleep(setup["pause_s"])
            if server.alive():
                memory[f"{setup['pause_s']} s later"] = server.memory()
            alive = server.alive()
        finally:
            server.stop()
        log_text = server.log_path.read_text(errors="replace")
        if not alive:
            tail = "\n".join(log_text.splitlines()[-20:])
            log(f"the server exited with status {server.process.returncode}; the end of its log:\n{tail}")

    failures = checks(nominal, overload, probe_results, alive)
    report = render(args, setup, nominal, overload, memory, probe_results, log_text, failures)
    print(report)
    if args.write:
        args.write.write_text(report)
        log(f"written to {args.write}")
    for failure in failures:
        log(f"FAILED: {failure}")
    return 1 if failures else 0


def render(args, setup: dict, nominal: dict, overload: dict, memory: dict, probes: dict, log_text: str,
           failures: list) -> str:
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", pathlib.Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    capacity, target = nominal["ok_per_s"], setup["target"]
    command = "python3 bench/overload.py" + (" --quick" if args.quick else f" --duration {args.duration:g}")
    command += f" --factor {args.factor:g}" if args.factor != 3 else ""
    out = [f"Measured {now} on {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, by `{command}`: "
           f"{setup['pinning']}. POST /predict ({MODEL}), {args.rows} records per request; monitoring on, no "
           "prediction log; " + ", ".join(f"`{k} = {v}`" for k, v in setup["limits"].items()) + ".", ""]
    out += [f"Nominal: `oha` closed loop, {args.nominal_connections} connections, {args.nominal_duration:g} s. "
            f"Overload: `oha -q {target:.0f} --latency-correction` ({args.factor:g}× nominal) over "
            f"{setup['connections']} connections, {args.duration:g} s, waiting for the requests in flight at the end.",
            ""]

    def answered(phase: dict, code: int) -> str:
        n = phase["by_status"].get(code, 0)
        return f"{n:,} ({n / phase['seconds']:,.0f}/s)"

    def late(phase: dict) -> int:
        limit_s = args.request_timeout_ms / 1e3
        return sum(1 for seconds in phase["from_send"] if seconds > limit_s) if args.request_timeout_ms else 0

    def counted(counts) -> str:
        return ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "none"

    def mib(name: str) -> str:
        return f"{memory[name]['VmRSS']:.1f}" if name in memory else "— (server gone)"

    codes = sorted(set(nominal["by_status"]) | set(overload["by_status"]) | {200, 429, 503})
    out += ["| | nominal | overload |", "|---|---:|---:|"]
    out += [f"| answers {code} | {answered(nominal, code)} | {answered(overload, code)} |" for code in codes]
    errors = overload["client_errors"]
    out.append(f"| no answer (client-side errors, timeouts) | {sum(nominal['client_errors'].values())} | "
               f"{sum(errors.values())}{' (' + counted(errors) + ')' if errors else ''} |")
    offered = overload["sent_per_s"]
    settled = [name for name in memory if name.endswith("later")]
    out += [
        f"| connection attempts dropped by the kernel (accept queue full, `ListenDrops`) | "
        f"{nominal['listen_drops']:,} | {overload['listen_drops']:,} |",
        f"| rate offered (requests sent / s) | {nominal['sent_per_s']:,.0f} (closed loop) | {offered:,.0f} = "
        f"{offered / capacity:.2f}× nominal (target {target:,.0f} = {args.factor:g}×) |",
        f"| requests scheduled but never sent (all connections busy; dropped by `oha` at the end) | — | "
        f"{max(0, round(target * args.duration) - len(overload['rows'])):,} |",
        f"| goodput (200 / s) | {capacity:,.0f} | {overload['ok_per_s']:,.0f} = "
        f"**{overload['ok_per_s'] / capacity:.2f}** of nominal |",
        f"| p50 of the 200s, from the send (ms) | {nominal['p50_ms']:.2f} | {overload['p50_ms']:.2f} |",
        f"| p99 of the 200s, from the send (ms) | {nominal['p99_ms']:.2f} | **{overload['p99_ms']:.2f}** = "
        f"{overload['p99_ms'] / nominal['p99_ms']:.1f}× nominal |",
        f"| p99 of the 200s, from the scheduled send (open loop, ms) | — | "
        f"**{overload['p99_scheduled_ms']:,.1f}** (max {overload['max_scheduled_ms']:,.1f}) |",
        f"| 200s answered later than `request_timeout_ms` ({args.request_timeout_ms} ms) after the send | "
        f"{late(nominal):,} | {late(overload):,} |",
        f"| p99 inside the server's handlers (ms, `inferd_request_duration_seconds` bucket, ≤) | "
        f"{nominal['handler_p99_ms']:.3g} | {overload['handler_p99_ms']:.3g} |",
        f"| server CPU (cores) | {nominal['server_cores']:.2f} | {overload['server_cores']:.2f} |",
        f"| load generator CPU (cores) | {nominal['generator_cores']:.2f} | {overload['generator_cores']:.2f} |",
        f"| other processes' CPU (cores) | {nominal['neighbours_cores']:.2f} | {overload['neighbours_cores']:.2f} |",
        f"| interrupts (irq + softirq, loopback networking included) / stolen by the hypervisor (cores) | "
        f"{nominal['interrupt_cores']:.2f} / {nominal['steal_cores']:.2f} | "
        f"{overload['interrupt_cores']:.2f} / {overload['steal_cores']:.2f} |",
        f"| resident memory (MiB): at start / before / after / {setup['pause_s']} s later | "
        f"{mib('at start')} / {mib('before')} | {mib('after')} / {mib(settled[0]) if settled else '—'} (peak "
        f"{memory[settled[0]]['VmHWM'] if settled else float('nan'):.1f}) |",
    ]
    for path, results in probes.items():
        seconds = sorted(s for _, s, _ in results)
        ok = sum(1 for good, _, _ in results if good)
        out.append(f"| GET {path} during the overload | — | {ok}/{len(results)} answered 200; p50 "
                   f"{percentile(seconds, 0.5) * 1e3:.1f} ms, max {percentile(seconds, 1.0) * 1e3:.1f} ms |")
    gone = "— (server gone)"
    out.append("| server's count of /predict answers (`inferd_requests_total`) | "
               + " | ".join(counted(p["server_answered"]) if p["server_answered"] is not None else gone
                            for p in (nominal, overload)) + " |")
    out.append("| `inferd_rejected_total`, by reason | " + " | ".join(
        counted(p["rejected"]) if p["rejected"] is not None else "— (not in this build, or server gone)"
        for p in (nominal, overload)) + " |")
    warnings = sum(1 for line in log_text.splitlines()
                   if " WARN " in line or " ERROR " in line or line.startswith("Error:"))
    panics = log_text.count("panicked")
    out += [f"| server log: WARN/ERROR/`Error:` lines, panics (whole run) | — | {warnings}, {panics} |", ""]

    if offered < 0.95 * target:
        why = ("the generator was not CPU-bound, so every connection was waiting on the server: it holds each "
               "request until it answers instead of refusing it, and a fixed pool of keep-alive connections "
               "cannot send faster than answers come back" if overload["generator_cores"] < 0.9 else
               "the generator used its whole core")
        out += [f"The generator did not offer {args.factor:g}×: it sent {offered / capacity:.2f}× nominal "
                f"({offered:,.0f} of {target:,.0f} requests a second); {why}. The requests it could not send "
                "waited inside `oha`, which the latency-corrected p99 (from the scheduled send) counts.", ""]
    if nominal["server_cores"] < 0.9 and setup["pinning"].startswith("server alone"):
        out += [f"The nominal run kept the server's core {nominal['server_cores']:.0%} busy: the capacity measured "
                "may be below what the server can do (more `--nominal-connections`, or a quieter machine).", ""]
    noise = [p["neighbours_cores"] + p["steal_cores"] for p in (nominal, overload)]
    if max(noise) > 0.2:
        out += [f"Other processes and the hypervisor took {noise[0]:.2f} cores during the nominal run and "
                f"{noise[1]:.2f} during the overload: the figures are noisy.", ""]
    out += slice_table(overload["rows"], args.duration)
    out += ["", "Checks: " + ("all passed (server alive, every request answered, the server's counts of answers "
                              "equal the client's, every health probe answered)" if not failures
                              else "; ".join(failures))]
    return "\n".join(out) + "\n"


def slice_table(rows: list, duration: float, slices: int = 6) -> list:
    """The overload's answers by time slice (by when each request was sent): does it drift?"""
    width = duration / slices
    out = [f"Overload by {width:.3g} s slice (by the time each request was sent):", "",
           "| slice (s) | sent/s | 200/s | 429/s | 503/s | other/s | p99 200s from send (ms) | "
           "p99 from schedule (ms) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i in range(slices):
        lo, hi = i * width, (i + 1) * width
        part = [r for r in rows if lo <= r[0] < hi]
        counts = {code: sum(1 for r in part if r[3] == code) for code in (200, 429, 503)}
        other = len(part) - sum(counts.values())
        rate = {code: n / width for code, n in counts.items()}
        from_send, from_schedule = latencies(part)
        out.append(f"| {lo:.1f}–{hi:.1f} | {len(part) / width:,.0f} | {rate[200]:,.0f} | {rate[429]:,.0f} | "
                   f"{rate[503]:,.0f} | {other / width:,.0f} | {percentile(from_send, 0.99) * 1e3:.2f} | "
                   f"{percentile(from_schedule, 0.99) * 1e3:,.1f} |")
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as error:
        log(f"error: {error}")
        sys.exit(2)
    except OSError as error:  # the server stopped answering mid-run
        log(f"error: {error}")
        sys.exit(1)
