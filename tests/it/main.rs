//! Integration tests: the built `hdev` binary against the real engines.

mod ci;
mod docker;
mod harness;
mod lifecycle;
mod mixed;
mod operations;
mod release;
mod snapshots;
mod support;
