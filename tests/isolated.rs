//! The tests that measure the server's memory or latency, as a test binary of their own
//! (`cargo test --test isolated`): the server runs in the test process, and what other tests
//! allocate or compute at the same time would show as its growth or its delay. cargo runs test
//! binaries one after another, so nothing else runs beside these; among themselves they take
//! turns (`support::memory::alone`).

// The fixtures are shared with `tests/tests.rs`; this binary uses a few of them.
#[allow(dead_code)]
mod support;

mod expect_body;
mod limits;
mod resources;
