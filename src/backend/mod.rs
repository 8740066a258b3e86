//! Backends: the engines machines run on.

#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod ssh;
