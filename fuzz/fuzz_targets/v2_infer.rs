//! KServe V2 inference requests, JSON or JSON + binary tensors (see `split_v2_input` for the input's framing):
//! `v2::infer::parse` answers `Ok` or a 4xx error, and every bundled model answers 2xx or 4xx.
#![no_main]

use std::sync::LazyLock;

use inferd_fuzz::{assert_holds, check_v2_parse, repository_root, split_v2_input, Server};
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Server> = LazyLock::new(|| Server::start(&repository_root()));

fuzz_target!(|data: &[u8]| {
    let (header_length, body) = split_v2_input(data);
    let header_text = header_length.map(String::from_utf8_lossy);
    assert_holds(check_v2_parse(body, header_text.as_deref()));
    assert_holds(SERVER.check_infer_all(header_length, body));
});
