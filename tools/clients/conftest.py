"""A real inferd for client suites: the binary named by $INFERD_BIN (default: target/release/inferd) serving
the bundled models (every version) on a free loopback port, stopped by PID when the session ends."""
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("INFERD_BIN", str(ROOT / "target/release/inferd"))
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "config.toml"
        config.write_text(
            f'[server]\nport = {port}\n[models]\nrepository = {json.dumps(str(ROOT / "models"))}\n'
            'default = "breast_cancer"\nversions = "all"\n')
        log = open(pathlib.Path(tmp) / "inferd.log", "w")
        process = subprocess.Popen([binary, "serve", "--config", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if process.poll() is not None or time.time() > deadline:
                        raise RuntimeError(f"inferd did not become ready: {(pathlib.Path(tmp) / 'inferd.log').read_text()}")
                    time.sleep(0.1)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=60)


def fixtures(model: str) -> dict:
    return json.loads((ROOT / "models" / model / "1" / "fixtures.json").read_text())


def manifest_features(model: str) -> list:
    """(name, type) of each feature, in [[features]] order, from the model's manifest."""
    import tomllib
    manifest = tomllib.loads((ROOT / "models" / model / "1" / "inferd.toml").read_text())
    return [(f["name"], f["type"]) for f in manifest["features"]]
