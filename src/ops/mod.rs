//! The application: what each command does, over the engine contract, for the command
//! line (and any other front end) to call. An operation works in a [`session::Session`]
//! environment and returns what happened; it never parses arguments or renders a table.

pub(crate) mod cache;
pub(crate) mod ci;
pub(crate) mod copy;
pub(crate) mod dashboard;
pub(crate) mod doctor;
pub(crate) mod export;
pub(crate) mod graph;
pub(crate) mod interact;
pub(crate) mod release;
pub(crate) mod session;
pub(crate) mod snapshot;
pub(crate) mod sources;
pub(crate) mod status;
pub(crate) mod teardown;
pub(crate) mod test;
pub(crate) mod up;
pub(crate) mod verify;

#[cfg(test)]
mod tests;
