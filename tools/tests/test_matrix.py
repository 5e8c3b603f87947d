"""The model-family matrix (tools/make_matrix.py, tests/data/matrix): the committed copy is complete and small,
and the tool regenerates it reproducibly (inferd replays it when the binary is built).  Run: pytest -q tools/tests"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tomllib

import pytest

TOOLS = pathlib.Path(__file__).resolve().parent.parent
ROOT = TOOLS.parent
MATRIX = ROOT / "tests/data/matrix"
sys.path.insert(0, str(TOOLS))
import make_matrix  # noqa: E402

FILES = ("model.onnx", "inferd.toml", "reference.json", "fixtures.json")
# cheap cases, one per converter family that needs no extra library: linear, forest, boosting, SVM, MLP
QUICK = ["logreg_binary", "linear_regression", "random_forest_classifier", "hist_gradient_boosting_regressor",
         "svc_rbf_multiclass", "mlp_regressor"]


def test_committed_matrix_is_complete_and_small():
    names = make_matrix.all_case_names()
    assert sorted(p.name for p in MATRIX.iterdir() if p.is_dir()) == sorted(names)
    total = 0
    for name in names:
        version = MATRIX / name / "1"
        for f in FILES:
            assert (version / f).is_file(), f"{name}: {f} missing"
            total += (version / f).stat().st_size
        assert (version / "model.onnx").stat().st_size < 500 * 1024, name
        fixtures = json.loads((version / "fixtures.json").read_text())
        assert len(fixtures["cases"]) >= make_matrix.N_FIXTURES, name
        assert len({json.dumps(c["input"], sort_keys=True) for c in fixtures["cases"]}) == len(fixtures["cases"])
    assert total < 10 * 1024 * 1024


def _same_versions(case: str) -> bool:
    """Byte-for-byte reproduction is only expected with the scikit-learn the committed copy was made with."""
    import sklearn

    card = tomllib.loads((MATRIX / case / "1" / "inferd.toml").read_text())["model"]["card"]
    return card.get("sklearn_version") == sklearn.__version__


def test_regenerates_the_committed_files(tmp_path):
    out = tmp_path / "matrix"
    run = subprocess.run([sys.executable, str(TOOLS / "make_matrix.py"), "--out", str(out), "--skip-torch",
                          "--only", *QUICK], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(QUICK)}/{len(QUICK)} cases written" in run.stdout
    if not _same_versions(QUICK[0]):
        pytest.skip("another scikit-learn than the committed matrix was made with: not compared byte for byte")
    for case in QUICK:
        for f in FILES:
            assert (out / case / "1" / f).read_bytes() == (MATRIX / case / "1" / f).read_bytes(), f"{case}/{f}"

    inferd = ROOT / "target/debug/inferd"
    if inferd.exists():
        check = subprocess.run([str(inferd), "check", *[str(out / c / "1") for c in QUICK]], capture_output=True,
                               text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.count("200/200 fixture cases match") == len(QUICK), check.stdout


def test_unknown_case_is_refused():
    run = subprocess.run([sys.executable, str(TOOLS / "make_matrix.py"), "--only", "no_such_case"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "unknown cases" in run.stderr
