//! The reply slot of `interlock` (`core/src/reply.rs`), built on its own so that its
//! loom models (`core/src/reply/loom_tests.rs`) can run without the rest of the engine:
//! `bash core/loom.sh`.

// The slot's API is the engine's to use; here only its models use it.
#![allow(dead_code)]

#[path = "../src/reply.rs"]
mod reply;
