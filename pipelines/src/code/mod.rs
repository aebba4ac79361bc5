//! The code-fix pipeline (being built; see the README's roadmap): code plus error context in,
//! a validated fix with its confidence out. This part is the analysis: a real parser
//! (tree-sitter, Python and JavaScript) to find syntax errors, rule-based fixers for the common
//! ones, and validation — a fix is proposed only if the fixed code parses. The event type and the
//! dataflow come next.

pub mod fix;

pub use fix::{Finding, Fix, FixKind, Language, diff, findings, parses, propose};
