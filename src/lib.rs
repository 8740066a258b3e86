//! hdev: developer environments (VMs through libvirt, containers through Docker) described
//! by one Envfile, brought up, provisioned, baselined and reset.

pub mod acceptance;
pub mod apply;
pub mod backend;
pub mod boxes;
pub mod cli;
pub mod envfile;
pub mod host;
#[cfg(test)]
mod layering;
pub mod lockfile;
pub mod ops;
pub mod output;
pub mod plan;
pub mod progress;
pub mod project;
pub mod provision;
pub mod release;
pub mod snapshot;
pub mod state;
pub mod templates;
pub mod throwaway;

/// Runs the command line and returns the process exit code.
pub fn run() -> i32 {
    cli::main()
}
