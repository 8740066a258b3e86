//! Integration tests: the built `hdev` binary against the real engines.

mod docker;
mod lifecycle;
mod mixed;
mod operations;
mod snapshots;
mod support;
