//! Integration tests: the built `hdev` binary against the real engines.

mod docker;
mod lifecycle;
mod operations;
mod snapshots;
mod support;
