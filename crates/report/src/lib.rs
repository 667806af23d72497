//! Reading results back for people: [`compare`] puts two runs side by side (in the spirit of
//! llama.cpp's `compare-llama-bench.py`): every metric both runs have, the ratio B/A, and
//! whether the difference exceeds what their standard errors explain; [`paired`] tests the
//! difference item by item when both runs scored the same items, and [`calibration`] reads
//! multiple-choice runs' confidence against their accuracy. [`collect`] reads one or
//! more results stores, [`figures`] turns them into charts ([`chart`]: SVG and PNG with
//! plotters), [`document`] into a report that [`html`] writes as one self-contained file and
//! [`markdown`] as Markdown with image files; [`text`] prints results as terminal tables.

pub mod calibration;
pub mod chart;
pub mod collect;
pub mod compare;
pub mod document;
pub mod figures;
pub mod html;
pub mod markdown;
pub mod paired;
pub mod reliability;
pub mod text;

pub use compare::{compare, Comparison, MetricComparison, SettingDifference, Verdict};
