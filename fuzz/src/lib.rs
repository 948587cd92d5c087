//! Fuzz target bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and the stable
//! tests (`codec/tests/hostile.rs` includes `bodies.rs` by path).
pub mod bodies;
pub mod replay_body;
