//! Integration tests: the built `hdev` binary against the real engines.

mod ci;
mod docker;
mod lifecycle;
mod operations;
mod release;
mod support;
