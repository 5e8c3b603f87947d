//! Manifest text (`inferd.toml`): parsed, validated and compiled like the loader does, never a panic; a
//! pipeline that compiles turns awkward records into finite rows or refuses them.
#![no_main]

use inferd_fuzz::{assert_holds, check_manifest};
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    // The loader reads manifests with `read_to_string`: text that is not UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    assert_holds(check_manifest(text));
    Corpus::Keep
});
