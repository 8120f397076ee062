//! Compile-time behaviour of `#[secure_tool]`: what must build, and the message for each mistake.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
