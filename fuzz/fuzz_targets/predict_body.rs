//! `/predict` bodies: any bytes, posted to every bundled model, are answered 2xx or 4xx.
#![no_main]

use std::sync::LazyLock;

use inferd_fuzz::{assert_holds, repository_root, Server};
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Server> = LazyLock::new(|| Server::start(&repository_root()));

fuzz_target!(|body: &[u8]| {
    assert_holds(SERVER.check_predict_all(body));
});
