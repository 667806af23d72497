//! Criterion benchmarks of lmdensity hot paths; see `benches/`.
