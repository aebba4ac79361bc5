//! inflight's pipelines, one module per use case, each with its event types, its default config and
//! a function that builds its dataflow from operators. The engine wires sources and sinks around it.

pub mod code;
pub mod flight;
pub mod trading;
