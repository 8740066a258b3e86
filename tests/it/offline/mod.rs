//! Tests that need no daemon: the Envfile's diagnostics, the environment hash, the box
//! store and its archives, releases from git tags.

mod boxes;
mod envfile;
mod fuzz;
mod hardening;
mod hash_props;
mod hashspec;
mod releases;
