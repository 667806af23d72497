//! Sweeps spread over machines without a scheduler of lmdensity's own: a sweep spec
//! ([`spec`]) expands into a plan of cells with content-addressed ids ([`plan`]); one process
//! runs one cell by index ([`cell`]: a Slurm array task, a Kubernetes Indexed Job pod, or a
//! shard on a plain machine) into a shared results store, resuming whatever the store holds;
//! [`slurm`] writes and submits the sbatch array of the unfinished cells, and [`status`] says
//! where every cell stands.

pub mod cell;
pub mod error;
pub mod plan;
pub mod slurm;
pub mod spec;
pub mod status;

pub use cell::{run_cell, CellOptions, CellOutcome, CellRecord, CellState};
pub use error::{ClusterError, Result};
pub use plan::{Cell, Plan};
pub use spec::SweepSpec;
