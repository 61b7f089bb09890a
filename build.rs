//! Compiles `proto/trigger.proto` (Argo Events' custom trigger protocol) with a vendored protoc,
//! so a fresh machine needs no system protoc, and records a descriptor set for server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through PROTOC; a build script is single-threaded, so setting
    // the variable cannot race with another thread reading the environment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc)
    };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(true)
        .file_descriptor_set_path(out.join("phasegate_descriptor.bin"))
        .compile_protos(&["proto/trigger.proto", "proto/runs.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
