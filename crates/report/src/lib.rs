//! Reading results back for people: [`compare`] puts two runs side by side (in the spirit of
//! llama.cpp's `compare-llama-bench.py`): every metric both runs have, the ratio B/A, and
//! whether the difference exceeds what their standard errors explain.

pub mod compare;

pub use compare::{compare, Comparison, MetricComparison, SettingDifference, Verdict};
