//! Generated code of `proto/trigger.proto` (package `triggers`, Argo Events' protocol) and
//! `proto/runs.proto` (package `phasegate.v1`), in one small module.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("triggers");

/// phasegate's own run history service (`proto/runs.proto`).
pub mod runs {
    tonic::include_proto!("phasegate.v1");
}

/// The encoded file descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("phasegate_descriptor");
