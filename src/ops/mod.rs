//! The application: what each command does, over the engine contract, for the command
//! line (and any other front end) to call. An operation works in a [`session::Opened`]
//! environment and returns what happened; it never parses arguments or renders a table.

pub mod copy;
pub mod session;
pub mod snapshot;
pub mod status;
pub mod teardown;
pub mod up;

#[cfg(test)]
mod tests;
