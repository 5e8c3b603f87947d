"""schemathesis against a real inferd's /openapi.json: every operation, every check (but the one
tools/clients/schemathesis.toml switches off where JSON Schema cannot say what inferd accepts), all four
phases, bounded in examples per operation and in time, with a fixed seed so a failure replays."""
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def test_the_openapi_document_holds_against_the_server(server):
    st = pathlib.Path(sys.executable).parent / "st"
    command = [str(st), "run", f"http://{server}/openapi.json", "--max-examples", "30", "--seed", "1",
               "--request-timeout", "10", "--max-failures", "20"]
    run = subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=900)
    print(run.stdout[-20000:])
    assert run.returncode == 0, "schemathesis found failures (above)"
    assert " passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1].lower()
