"""Writes tests/data/drift_cases.json: drift windows computed offline with numpy / scipy, for inferd's Rust
drift code to reproduce (DESIGN §6). Uses the wine sample's reference.json and real wine values (some shifted
by half a standard deviation, some missing, some unseen categories).

    python tools/make_drift_fixture.py
"""
import json
import pathlib

import numpy as np
from sklearn.datasets import load_wine

from make_monitor_fixtures import drift  # one implementation of the binning, PSI and JS arithmetic

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "models/wine/1/reference.json"
OUT = ROOT / "tests/data/drift_cases.json"


def case(name, profile, values, window, capacity=None):
    """The window holds the last `window` values (of `capacity`): its shares, PSI and JS."""
    return {"feature": name, "capacity": capacity or window, "values": values, **drift(profile, values[-window:])}


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
