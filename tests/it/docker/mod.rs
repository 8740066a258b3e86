//! Tests that need the Docker engine (and no libvirtd).

mod box_images;
mod cache;
mod ci;
mod export;
mod graph;
mod lifecycle;
pub(crate) mod nonroot;
mod operations;
mod release;
mod snapshots;
mod sources;
mod ui;
mod up;
