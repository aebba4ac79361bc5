//! inflight's pipelines, one module per use case, each with its event types, its default config and
//! a function that builds its dataflow from operators. The engine wires sources and sinks around it.

pub mod code;
pub mod flight;
pub mod trading;

/// The specification's example event `name` (shipped in `data/examples/`) as one JSON line.
#[cfg(test)]
pub(crate) fn spec_example(name: &str) -> String {
    let path = format!("{}/../data/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.to_string()
}
