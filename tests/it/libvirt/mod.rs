//! Tests that need libvirtd, most of them the Docker engine too: VMs, environments
//! mixing VMs and containers, `hdev doctor`. The two that call the library's libvirt
//! code are built with the `libvirt` feature only.

#[cfg(feature = "libvirt")]
mod box_volumes;
mod cache;
mod cloud_image;
mod doctor;
mod export;
mod harness;
mod mixed;
mod nonroot;
mod preflight;
mod remote;
#[cfg(feature = "libvirt")]
mod vm;
mod vm_snapshots;
