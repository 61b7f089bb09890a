//! Generated code of `proto/trigger.proto` (package `triggers`), in one small module.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("triggers");

/// The encoded file descriptor set, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("phasegate_descriptor");
