"""Writes tests/data/drift_cases.json: drift windows computed offline with numpy / scipy, for inferd's Rust
drift code to reproduce (DESIGN §6). Uses the wine sample's reference.json and real wine values (some shifted
by half a standard deviation, some missing, some unseen categories).

    python tools/make_drift_fixture.py
"""
import json
import pathlib

import numpy as np
from scipy.spatial.distance import jensenshannon
from sklearn.datasets import load_wine

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "models/wine/1/reference.json"
OUT = ROOT / "tests/data/drift_cases.json"
FLOOR = 1e-4


def bins(profile, values):
    """Bin index per value: searchsorted left for numbers, category index / other for categories, missing last."""
    if profile["kind"] == "number":
        edges = np.asarray(profile["edges"])
        missing = len(edges) + 1
        return [missing if v is None else int(np.searchsorted(edges, v, side="left")) for v in values]
    cats = profile["categories"]
    missing = len(cats) + 1
    return [missing if v is None else (cats.index(v) if v in cats else len(cats)) for v in values]


def case(name, profile, values, window, capacity=None):
    last = values[-window:]
    b = bins(profile, last)
    n_bins = len(profile["ratios"]) + 1
    actual = np.bincount(b, minlength=n_bins) / len(last)
    expected = np.asarray(profile["ratios"] + [profile["missing"]])
    a, e = np.maximum(actual, FLOOR), np.maximum(expected, FLOOR)
    psi = float(np.sum((a - e) * np.log(a / e)))
    js = float(jensenshannon(actual, expected))
    return {"feature": name, "capacity": capacity or window, "values": values, "shares": actual.tolist(), "psi": psi, "js": js}


def main():
    reference = json.loads(REFERENCE.read_text())
    wine = load_wine(as_frame=True).frame
    rng = np.random.default_rng(7)
    cases = []
    for feature, shift in [("magnesium", 0.0), ("magnesium", 0.5), ("alcohol", 0.0), ("proline", 1.0)]:
        column = wine[feature].to_numpy(dtype=float)
        values = rng.choice(column, size=300) + shift * column.std()
        values = [None if rng.random() < 0.05 else float(v) for v in values]
        cases.append(case(feature, reference["features"][feature], values, window=200))
    hue = ["low", "medium", "high", "ultraviolet", None]
    values = [str(v) if v is not None else None for v in rng.choice(np.array(hue, dtype=object), size=150, p=[0.5, 0.2, 0.2, 0.05, 0.05])]
    cases.append(case("hue_band", reference["features"]["hue_band"], values, window=100))
    # A window not yet full (capacity 1000, 37 observations): PSI and JS over everything it holds.
    cases.append(case("ash", reference["features"]["ash"], [float(v) for v in wine["ash"][:37]], window=37,
                      capacity=1000))
    OUT.write_text(json.dumps({"reference": str(REFERENCE.relative_to(ROOT)), "cases": cases}, indent=1) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {len(cases)} cases")


if __name__ == "__main__":
    main()
