//! The integration tests, one binary: the built `hdev` against the real engines, built
//! with one builder (`support::TestEnv`). Tests are grouped by what they need, so a
//! filter picks a tier:
//!
//! - `cargo test --test it offline::`: no daemon (the Envfile, the hash, the box store,
//!   releases);
//! - `cargo test --test it docker::`: the Docker engine;
//! - `cargo test --test it libvirt::`: libvirtd, most of them Docker too (VMs, mixed
//!   environments, `hdev doctor`);
//! - `cargo test --test it multihost::`: the three-engine rig of `.ci/rig` (several
//!   hosts), started by `.ci/setup` (or by the tests, as root).
//!
//! A test that needs a daemon fails, saying what to do, when the daemon is missing (CI
//! or not); the fast tier without daemons is `cargo test --lib`.

mod docker;
mod libvirt;
mod multihost;
mod offline;
mod support;
