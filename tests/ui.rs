//! Compile-time behaviour of `#[secure_tool]`: what must build, and the message for each mistake.
//!
//! The snapshots hold rustc's messages as the pinned toolchain writes them, and a few name dependencies' paths
//! (`context_type_alias.stderr` names serde's versioned `__private` module): after `cargo update` or a new
//! toolchain, regenerate with `TRYBUILD=overwrite cargo test -p secure-tools-tests --test ui` and read each diff (a
//! follow-on error added is a regression).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
