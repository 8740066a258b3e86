//! Tests that need the Docker engine (and no libvirtd).

mod box_images;
mod ci;
mod lifecycle;
mod nonroot;
mod operations;
mod release;
mod snapshots;
mod up;
