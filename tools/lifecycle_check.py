"""What a model swap costs a running inferd (issue 9's figures), on the release binary:
1. a swap under load: `wrk` sends /predict for `--seconds` at `--connections`; halfway, a new version is
   published with an atomic `mv` and picked up by polling (`poll_interval_s`); reports requests served,
   non-2xx answers (must be 0), and the time from `mv` to the first answer from the new version;
2. the same by `POST /admin/reload` right after the `mv`;
3. resident memory of the server before and after `--cycles` load/unload cycles (publish version n+1,
   reload, remove version n), after 10 warm-up cycles.

    python tools/lifecycle_check.py [--inferd target/release/inferd] [--seconds 6] [--cycles 50]

Bounded in time and requests; every process it starts is stopped by PID. Needs `wrk`.
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = "breast_cancer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: bytes | None = None, method: str | None = None) -> dict:
    req = urllib.request.Request(url, data=body, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def resident_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def publish(repository: pathlib.Path, version: int) -> float:
    """Copies version 1's files beside the model, then renames them into place; answers the rename's time."""
    staging = repository / MODEL / f".staging-{version}"
    shutil.copytree(ROOT / "models" / MODEL / "1", staging)
    moved = time.monotonic()
    os.rename(staging, repository / MODEL / str(version))
    return moved


def wait_for_version(url: str, body: bytes, version: str, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        if request(url, body)["version"] == version:
            return time.monotonic()
        time.sleep(0.002)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inferd", default=str(ROOT / "target/release/inferd"))
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--poll", type=float, default=0.5)
    args = ap.parse_args()

    case = json.loads((ROOT / "models" / MODEL / "1" / "fixtures.json").read_text())["cases"][0]["input"]
    body = json.dumps({"instances": [case]}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        repository = work / "models"
        (repository / MODEL).mkdir(parents=True)
        shutil.copytree(ROOT / "models" / MODEL / "1", repository / MODEL / "1")
        port = free_port()
        (work / "config.toml").write_text(
            f"[server]\nport = {port}\nmax_in_flight = 4096\n[models]\nrepository = {json.dumps(str(repository))}\n"
            f"default = \"{MODEL}\"\npoll_interval_s = {args.poll}\n")
        (work / "post.lua").write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body.decode())}\n")
        log = open(work / "server.log", "w")
        server = subprocess.Popen([args.inferd, "serve", "--config", str(work / "config.toml")], stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(base + "/health/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            # 1. Under load, picked up by polling.
            results = {}
            def load():
                out = subprocess.run(
                    ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s", str(work / "post.lua"),
                     base + "/predict"], capture_output=True, text=True, timeout=args.seconds + 30).stdout
                results["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
                non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                results["non2xx"] = int(non2xx.group(1)) if non2xx else 0
                errors = re.search(r"Socket errors: (.*)", out)
                results["socket_errors"] = errors.group(1) if errors else "none"
            loader = threading.Thread(target=load)
            loader.start()
            time.sleep(args.seconds / 2)
            moved = publish(repository, 2)
            served = wait_for_version(base + "/predict", body, "2", moved + 30)
            loader.join()
            print(f"swap under load (wrk -c{args.connections}, {args.seconds} s, polling every {args.poll} s): "
                  f"{results['requests']} requests, {results['non2xx']} non-2xx, socket errors: "
                  f"{results['socket_errors']}; mv to serving: "
                  + (f"{(served - moved) * 1000:.0f} ms" if served else "never"))
            # 2. By an explicit reload right after the mv.
            moved = publish(repository, 3)
            request(base + "/admin/reload", b"", "POST")
            served = wait_for_version(base + "/predict", body, "3", moved + 30)
            print(f"mv, then POST /admin/reload: serving after {(served - moved) * 1000:.1f} ms")
            # 3. Memory over load/unload cycles.
            version = 3
            start = resident_mib(server.pid)
            warmup = 10
            for cycle in range(warmup + args.cycles):
                if cycle == warmup:
                    before = resident_mib(server.pid)
                elif cycle > warmup and (cycle - warmup) % 25 == 0:
                    print(f"  after {cycle - warmup} cycles: {resident_mib(server.pid):.1f} MiB", flush=True)
                version += 1
                publish(repository, version)
                request(base + "/admin/reload", b"", "POST")  # (or the poll got there first)
                assert wait_for_version(base + "/predict", body, str(version), time.monotonic() + 30), version
                shutil.rmtree(repository / MODEL / str(version - 1))
            time.sleep(0.5)
            after = resident_mib(server.pid)
            print(f"resident memory: {start:.1f} MiB at start, {before:.1f} MiB after {warmup} warm-up load/unload "
                  f"cycles (the allocator keeps freed pages for reuse), {after:.1f} MiB after {args.cycles} more")
        finally:
            server.terminate()
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
