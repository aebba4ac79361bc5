//! Synthetic flight data (placeholder until the generator lands).
