//! Validates Envoy bootstrap files and prints what was found, with timings.
//!
//! `cargo run -p failover-envoy-schema --example validate -- envoy/envoy.yaml [more.yaml…]`
//!
//! The same check is offered to users as `failover-host --mode validate -c FILE`; this example
//! exists to see the schema layer alone and how long it takes.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: validate FILE.yaml [FILE.yaml ...]");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in &files {
        // The first call also decodes the descriptor pool; the second shows a warm validation.
        let cold = Instant::now();
        let first = failover_envoy_schema::validate_file(Path::new(file));
        let cold = cold.elapsed();
        let warm = Instant::now();
        let _ = failover_envoy_schema::validate_file(Path::new(file));
        let warm = warm.elapsed();
        match first {
            Ok(validated) => {
                println!("{file}: OK (first {cold:?}, again {warm:?})");
                for plugin in validated.plugins() {
                    println!(
                        "  {:?} {} root_id={} vm_id={} at {}",
                        plugin.kind, plugin.name, plugin.root_id, plugin.vm_id, plugin.path
                    );
                }
            }
            Err(e) => {
                println!("{file}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
