//! hdev: developer environments (VMs through libvirt, containers through Docker) described
//! by one Envfile, brought up, provisioned, baselined and reset.

pub(crate) mod acceptance;
pub(crate) mod apply;
pub mod backend;
pub mod boxes;
pub(crate) mod cache;
pub(crate) mod cli;
pub mod envfile;
pub(crate) mod export;
pub(crate) mod graph;
pub mod host;
#[cfg(test)]
mod layering;
pub(crate) mod lockfile;
pub(crate) mod ops;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod progress;
pub(crate) mod project;
pub(crate) mod provision;
pub(crate) mod release;
pub(crate) mod snapshot;
pub(crate) mod sources;
pub(crate) mod state;
pub(crate) mod templates;
pub(crate) mod throwaway;
pub(crate) mod ui;

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    cli::main()
}

/// Ends the process with `code` (see `host::exit_now`: no C exit handlers racing threads).
pub fn exit(code: i32) -> ! {
    host::exit_now(code)
}
