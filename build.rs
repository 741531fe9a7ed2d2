//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so no system `protoc` is needed, and keeps the
//! descriptor set for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/kms/v1/kms.proto"];
    println!("cargo:rerun-if-changed=proto");

    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("kms_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    // Server stubs only with the server feature, so a client-only build needs none of tonic's server code.
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
