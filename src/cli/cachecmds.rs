//! `hdev cache list|prune`: the provisioned-state cache from the command line.

use clap::Subcommand;

use super::{render, CmdResult};
use crate::ops::session::runtime;
use crate::output::Printer;

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCmd {
    /// List the cached provisioned states: hash, environment and machine, size, age and
    /// last use (least recently used first).
    List,
    /// Remove the least recently used entries until the cache holds at most its bound
    /// (`HDEV_CACHE_MAX`, default 10G), or `--keep-bytes`, or everything (`--all`).
    Prune {
        /// Remove every entry.
        #[arg(long, conflicts_with = "keep_bytes")]
        all: bool,
        /// Keep at most this much (a size such as `2G` or a number of bytes).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        keep_bytes: Option<u64>,
    },
}

/// A size with a unit (`2G`), or a plain number of bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) => crate::envfile::units::parse_size(s),
    }
}

pub(super) fn run(p: &Printer, cmd: &CacheCmd) -> CmdResult {
    match cmd {
        CacheCmd::List => {
            let l = runtime()?.block_on(crate::ops::cache::list())?;
            render::cache::list(p, &l);
            Ok(0)
        }
        CacheCmd::Prune { all, keep_bytes } => {
            let r = runtime()?.block_on(crate::ops::cache::prune(*all, *keep_bytes))?;
            render::cache::pruned(p, &r);
            Ok(i32::from(!r.failed.is_empty()))
        }
    }
}
