//! Drift windows equal an offline numpy / scipy computation (`tools/make_drift_fixture.py`) on the same values:
//! bins by `searchsorted(edges, x, side="left")`, PSI with the 1e-4 floor, scipy's `jensenshannon`.

use std::path::Path;

use inferd::monitor::drift::{reference_shares, Binner, DriftWindows};
use inferd::monitor::reference::ReferenceProfile;
use inferd::preprocess::RawValue;
use inferd::repository::manifest::Manifest;
use serde_json::Value;

#[test]
fn psi_and_js_equal_numpy_and_scipy() {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string("tests/data/drift_cases.json").unwrap()).unwrap();
    let reference_path = Path::new(cases["reference"].as_str().unwrap());
    let manifest = Manifest::from_path(&reference_path.with_file_name("inferd.toml")).unwrap();
    let reference = ReferenceProfile::from_path(reference_path, &manifest).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let feature = case["feature"].as_str().unwrap();
        let profile = &reference.features[feature];
        let binner = Binner::new(profile);
        let capacity = case["capacity"].as_u64().unwrap() as usize;
        let mut window = DriftWindows::new(capacity, vec![reference_shares(profile)]);
        for value in case["values"].as_array().unwrap() {
            let raw = match value {
                Value::Null => RawValue::Missing,
                Value::String(s) => RawValue::Category(s.as_str().into()),
                other => RawValue::Number(other.as_f64().unwrap()),
            };
            window.observe(|slot| slot[0] = binner.bin(&raw) as u32);
        }
        let shares = window.shares(0).unwrap();
        for (got, want) in shares.iter().zip(case["shares"].as_array().unwrap()) {
            assert!((got - want.as_f64().unwrap()).abs() < 1e-12, "{feature}: shares {shares:?} vs {}", case["shares"]);
        }
        let (psi, js) = (window.psi(0).unwrap(), window.js(0).unwrap());
        let (want_psi, want_js) = (case["psi"].as_f64().unwrap(), case["js"].as_f64().unwrap());
        assert!((psi - want_psi).abs() < 1e-6, "{feature}: psi {psi} vs {want_psi}");
        assert!((js - want_js).abs() < 1e-6, "{feature}: js {js} vs {want_js}");
    }
}
