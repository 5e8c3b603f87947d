#!/usr/bin/env python3
"""inferd against the peer (FastAPI + onnxruntime, 2 uvicorn[standard] workers, `../shared/peers`) on the same
model files, side by side in one run on 127.0.0.1, with two ceilings measured in the same run: a bare axum
handler that parses the same body into a map (`examples/http_ceiling.rs`, the HTTP ceiling) and tract run
in process at batch 64 (`examples/tract_ceiling.rs`, the batching ceiling).

    python3 bench/compare.py [--seconds 5] [--rounds 3] [--write REPORT.md]

What it does, in order (everything under bench/.work, which git ignores):
1. `cargo build --release` of inferd and the two ceiling examples;
2. a virtual environment with the peer's requirements, and the peer's `make_models.py` (breast_cancer_logreg,
   digits_mlp: model.onnx, spec.json, requests.json);
3. an inferd repository with the same model.onnx files: a manifest written from each spec.json (the same
   standard scaling the peer applies) and a drift reference profiled by `inferd profile` from the same
   training split, so inferd serves with its default monitoring on (metrics, drift, feedback memory);
4. starts inferd, the peer (one server per model) and the HTTP ceiling, timing each cold start to its first
   healthy answer;
5. drives each with `oha` for `--seconds` per scenario, servers in turn, all scenarios `--rounds` times over
   (each cell: the median over rounds, so a burst of noise on this shared machine moves one round only);
6. prints one table and the targets of issue 7 (and with --write, a dated report).

Bounded: 10 runs of `--seconds` per round plus builds; every process it starts is stopped by PID.
Needs `oha` (cargo install --locked oha) and python3 with venv.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
MODELS = ("breast_cancer_logreg", "digits_mlp")
# The datasets make_models.py trains on, to profile the same training split.
TRAIN_SPLIT = """
import json, pathlib, sys
import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
out = pathlib.Path(sys.argv[1])
for name, data in (("breast_cancer_logreg", load_breast_cancer()), ("digits_mlp", load_digits())):
    x, y = data.data.astype(np.float32), data.target
    names = getattr(data, "feature_names", None)
    features = [str(f) for f in names] if names is not None else [f"pixel_{i}" for i in range(x.shape[1])]
    x_train, _, _, _ = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    lines = [",".join('"%s"' % f for f in features)] + [",".join(repr(float(v)) for v in row) for row in x_train]
    (out / f"{name}.csv").write_text("\\n".join(lines) + "\\n")
"""


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def write_manifest(spec: dict, folder: pathlib.Path) -> None:
    """An inferd manifest for a peer model: every feature a number, the peer's standard scaling, labels."""
    features = spec["features"]
    lines = ["[model]", 'task = "classification"', f"input_order = {toml_list(features)}", ""]
    for name in features:
        lines += ["[[features]]", f"name = {json.dumps(name)}", 'type = "number"', ""]
    lines += ["[[preprocess]]", 'op = "standard_scale"', f"features = {toml_list(features)}",
              f"mean = {toml_list(spec['scaler_mean'])}", f"scale = {toml_list(spec['scaler_scale'])}", ""]
    lines += ["[outputs]", f"labels = {toml_list(spec['labels'])}", 'probabilities = "probabilities"', ""]
    (folder / "inferd.toml").write_text("\n".join(lines))


def prepare(args) -> dict:
    log("building inferd and the ceilings (cargo build --release)")
    run(["cargo", "build", "--release", "--bin", "inferd", "--example", "http_ceiling", "--example", "tract_ceiling"],
        cwd=ROOT)
    WORK.mkdir(parents=True, exist_ok=True)
    venv = WORK / "peer-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        log("creating the peer's virtual environment")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "--quiet", "-r", str(args.peer_dir / "requirements.txt")])
    models = WORK / "bench_models"
    if not all((models / m / "requests.json").exists() for m in MODELS):
        log("training the peer's models (make_models.py)")
        run([str(python), str(args.peer_dir / "make_models.py"), str(models)])
    train = WORK / "train"
    train.mkdir(exist_ok=True)
    run([str(python), "-c", TRAIN_SPLIT, str(train)])
    repo = WORK / "repo"
    config = WORK / "inferd.toml"
    port = free_port()
    config.write_text(f'[server]\naddr = "127.0.0.1"\nport = {port}\n\n[models]\nrepository = {json.dumps(str(repo))}\n'
                      f'default = "{MODELS[0]}"\n')
    for name in MODELS:
        folder = repo / name / "1"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.onnx").write_bytes((models / name / "model.onnx").read_bytes())
        write_manifest(json.loads((models / name / "spec.json").read_text()), folder)
        run([str(ROOT / "target/release/inferd"), "profile", "--config", str(config), "--model", name,
             "--input", str(train / f"{name}.csv")], stdout=subprocess.DEVNULL)
    bodies = {}
    for name in MODELS:
        requests = json.loads((models / name / "requests.json").read_text())
        for kind in ("single", "batch32"):
            path = WORK / f"{name}-{kind}.json"
            path.write_text(json.dumps(requests[kind]))
            bodies[(name, kind)] = path
    return {"python": python, "models": models, "repo": repo, "config": config, "port": port, "bodies": bodies}


class Server:
    def __init__(self, name: str, command: list, port: int, ready_path: str, env=None, cwd=None):
        self.name, self.port = name, port
        self.log = open(WORK / f"{name}.log", "w")
        started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=env, cwd=cwd,
                                        start_new_session=True)
        deadline = started + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited at startup; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 120 s")
            time.sleep(0.002)
        self.cold_start = time.monotonic() - started

    def rss_mib(self) -> float:
        """Resident memory of the process and its children (uvicorn's workers), MiB."""
        pids = [self.process.pid]
        try:
            children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
            pids += [int(p) for p in children.split()]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                status = pathlib.Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
            except (OSError, AttributeError):
                pass
        return total / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def oha(url: str, body: pathlib.Path, concurrency: int, seconds: int) -> dict:
    command = ["oha", "-z", f"{seconds}s", "-c", str(concurrency), "--no-tui", "--output-format", "json",
               "-m", "POST", "-H", "content-type: application/json", "-D", str(body), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    result = json.loads(out)
    codes = result.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    return {
        "rps": ok / result["summary"]["total"],
        "p50_ms": result["latencyPercentiles"]["p50"] * 1000,
        "p99_ms": result["latencyPercentiles"]["p99"] * 1000,
        "non_200": sum(v for k, v in codes.items() if k != "200"),
    }


def metric(text: str, name: str, model: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="per scenario, server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-dir", type=pathlib.Path, default=ROOT.parent / "shared" / "peers",
                        help="the peer's folder (fastapi_onnxruntime.py, make_models.py, requirements.txt)")
    parser.add_argument("--write", type=pathlib.Path, help="write the report (markdown) here")
    args = parser.parse_args()
    if not (args.peer_dir / "fastapi_onnxruntime.py").is_file():
        parser.error(f"no peer in {args.peer_dir}: give its folder with --peer-dir")
    setup = prepare(args)
    cores = os.cpu_count()

    servers = {}
    try:
        servers["inferd"] = Server("inferd", [str(ROOT / "target/release/inferd"), "serve", "--config",
                                              str(setup["config"])], setup["port"], "/health/ready")
        for model in MODELS:
            port = free_port()
            env = dict(os.environ, MODEL_DIR=str(setup["models"] / model))
            servers[f"peer:{model}"] = Server(
                f"peer-{model}",
                [str(setup["python"]), "-m", "uvicorn", "fastapi_onnxruntime:app", "--host", "127.0.0.1", "--port",
                 str(port), "--workers", "2", "--no-access-log", "--app-dir", str(args.peer_dir)],
                port, "/health", env=env)
    except Exception:
        for server in servers.values():
            server.stop()
        raise
    # The ceiling answers POST /predict only; it is ready once it accepts a connection.
    port = free_port()
    ceiling = subprocess.Popen([str(ROOT / "target/release/examples/http_ceiling"), f"127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(5000):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.002)
    ceiling_url = f"http://127.0.0.1:{port}/predict"

    inferd = servers["inferd"]
    url = lambda model: f"http://127.0.0.1:{inferd.port}/models/{model}/predict"  # noqa: E731
    peer = lambda model: f"http://127.0.0.1:{servers['peer:' + model].port}/predict"  # noqa: E731
    logreg, mlp = MODELS
    single, batch32 = setup["bodies"][(logreg, "single")], setup["bodies"][(logreg, "batch32")]
    mlp_single = setup["bodies"][(mlp, "single")]
    scenarios = [
        ("1 record, c=1", 1, 1, [("inferd", url(logreg)), ("peer", peer(logreg)), ("ceiling", ceiling_url)], single),
        ("1 record, c=32", 32, 1, [("inferd", url(logreg)), ("peer", peer(logreg)), ("ceiling", ceiling_url)], single),
        ("32 records, c=8", 8, 32, [("inferd", url(logreg)), ("peer", peer(logreg))], batch32),
        ("digits MLP, 1 record, c=64", 64, 1, [("inferd", url(mlp)), ("peer", peer(mlp))], mlp_single),
    ]
    runs = {}
    memory = {}
    try:
        for round_ in range(args.rounds):
            for title, concurrency, rows, targets, body in scenarios:
                for who, target in targets:
                    log(f"round {round_ + 1}/{args.rounds}, {title}: {who}")
                    runs.setdefault((title, who), []).append(dict(oha(target, body, concurrency, args.seconds), rows=rows))
        results = {cell: {key: statistics.median(r[key] for r in cell_runs) for key in cell_runs[0]}
                   for cell, cell_runs in runs.items()}
        for cell, cell_runs in runs.items():
            results[cell]["non_200"] = sum(r["non_200"] for r in cell_runs)
        with urllib.request.urlopen(f"http://127.0.0.1:{inferd.port}/metrics") as response:
            metrics_text = response.read().decode()
        memory = {"inferd": inferd.rss_mib(), "peer": servers[f"peer:{logreg}"].rss_mib(),
                  "peer_mlp": servers[f"peer:{mlp}"].rss_mib()}
    finally:
        for server in servers.values():
            server.stop()
        os.killpg(ceiling.pid, signal.SIGTERM)
        ceiling.wait(timeout=20)

    log("tract ceilings (in process, batch 64)")
    tract = {}
    for threads in sorted({1, cores}):
        out = subprocess.run([str(ROOT / "target/release/examples/tract_ceiling"), str(setup["repo"] / mlp / "1"),
                              "64", "3", str(threads)], capture_output=True, text=True, check=True).stdout
        tract[threads] = json.loads(out)["rows_per_s"]
    batches = metric(metrics_text, "inferd_batch_size_count", mlp)
    batch_rows = metric(metrics_text, "inferd_batch_size_sum", mlp)
    inference_s = metric(metrics_text, "inferd_inference_duration_seconds_sum", mlp)
    in_tract = batch_rows / inference_s if inference_s > 0 else float("nan")

    report = render(results, memory, {n: s.cold_start for n, s in servers.items()}, tract, cores,
                    batch_rows / batches if batches else float("nan"), in_tract, args.seconds, args.rounds)
    print(report)
    if args.write:
        args.write.write_text(report)
        log(f"written to {args.write}")


def render(results, memory, cold, tract, cores, mean_batch, in_tract, seconds, rounds) -> str:
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", pathlib.Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Measured {now} on {cores} cores ({cpu}), Linux {platform.release()}, by `python3 bench/compare.py"
           f" --seconds {seconds} --rounds {rounds}`: `oha` on 127.0.0.1, {seconds} s per cell and round, every"
           f" server on the same machine in turn, each cell the median of {rounds} rounds. Models from the peer's `make_models.py`; inferd runs its default configuration (monitoring"
           " on: metrics, drift windows, feedback memory; batching on).", ""]
    out += ["| scenario | server | req/s | rows/s | p50 ms | p99 ms | non-200 (all rounds) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for (title, who), r in results.items():
        out.append(f"| {title} | {who} | {r['rps']:,.0f} | {r['rps'] * r['rows']:,.0f} | {r['p50_ms']:.3f} | "
                   f"{r['p99_ms']:.3f} | {r['non_200']} |")
    out += ["", "| resource | inferd | peer |", "|---|---:|---:|",
            f"| resident memory after the runs (MiB) | {memory['inferd']:.1f} (both models) | {memory['peer']:.1f} "
            f"(logreg; digits MLP server {memory['peer_mlp']:.1f}) |",
            f"| cold start to ready (s) | {cold['inferd']:.3f} | {cold['peer:breast_cancer_logreg']:.3f} |", ""]
    out += [f"tract in process, digits MLP at batch 64: {tract[1]:,.0f} rows/s on 1 thread"
            + (f", {tract[cores]:,.0f} rows/s on {cores} threads" if cores in tract and cores != 1 else "") + ".",
            f"Inside inferd during the digits MLP run: mean batch {mean_batch:.1f} rows, {in_tract:,.0f} rows per"
            " second of tract time.", ""]

    def r(title, who):
        return results[(title, who)]
    one32, one1, b32, mlp = "1 record, c=32", "1 record, c=1", "32 records, c=8", "digits MLP, 1 record, c=64"
    rows = [
        ("c=32, 1 record: inferd / peer req/s", r(one32, "inferd")["rps"] / r(one32, "peer")["rps"], "≥ 8"),
        ("c=32, 1 record: inferd / HTTP ceiling req/s", r(one32, "inferd")["rps"] / r(one32, "ceiling")["rps"], "≥ 0.6"),
        ("c=32, 1 record: inferd p99 (ms)", r(one32, "inferd")["p99_ms"], "≤ 2"),
        ("c=1: inferd p50 / HTTP ceiling p50", r(one1, "inferd")["p50_ms"] / r(one1, "ceiling")["p50_ms"], "≤ 1.3"),
        ("32-record bodies, c=8: inferd / peer rows/s",
         r(b32, "inferd")["rps"] / r(b32, "peer")["rps"], "≥ 8"),
        ("digits MLP c=64: inferd rows/s / tract batch-64 (1 thread)", r(mlp, "inferd")["rps"] / tract[1], "≥ 0.7"),
        ("digits MLP: rows per second of tract time in inferd / tract batch-64 (1 thread)", in_tract / tract[1],
         "(batch efficiency)"),
        ("resident memory: inferd / peer", memory["inferd"] / memory["peer"], "≤ 0.2"),
        ("cold start to ready (s)", cold["inferd"], "< 0.5"),
    ]
    out += ["| target (issue 7) | measured | wanted |", "|---|---:|---:|"]
    out += [f"| {name} | {value:.3g} | {wanted} |" for name, value, wanted in rows]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
