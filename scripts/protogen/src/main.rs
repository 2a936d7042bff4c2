//! Writes `examples/proto/helloworld.rs`, tonic's generated server and
//! client for `examples/proto/helloworld.proto`.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proto");
    tonic_prost_build::configure()
        .out_dir(&proto)
        .build_transport(false)
        .compile_protos(&[proto.join("helloworld.proto")], &[proto.clone()])?;
    println!("wrote {}", proto.join("helloworld.rs").display());
    Ok(())
}
