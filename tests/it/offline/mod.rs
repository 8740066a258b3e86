//! Tests that need no daemon: the Envfile's diagnostics, the environment hash, the box
//! store and its archives, releases from git tags, the topology picture.

mod boxes;
mod envfile;
mod fuzz;
mod graph;
mod hardening;
mod hash_props;
mod hashspec;
mod releases;
mod sources;
mod ui;
