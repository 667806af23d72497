//! The cluster's error type: a bad spec or plan (naming the file, the cell and what is wrong),
//! a scheduler command that is missing or failed, or a job's own error.

use std::path::PathBuf;

use lmdensity_jobs::JobError;

/// Why planning, submitting or running a cell failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A sweep spec, plan or cell record is wrong: the file and what is wrong with it.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (the key, cell index or line).
        what: String,
    },
    /// The request cannot be carried out as given (a flag, an index, a directory).
    #[error("{0}")]
    Invalid(String),
    /// A scheduler command (sbatch, squeue, …) is missing or failed.
    #[error("{program}: {what}")]
    Scheduler {
        /// The command.
        program: String,
        /// What went wrong, with its stderr.
        what: String,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A job (perplexity, task, bench, fetching, the store).
    #[error(transparent)]
    Job(#[from] JobError),
}

impl From<ClusterError> for JobError {
    fn from(err: ClusterError) -> JobError {
        match err {
            ClusterError::Job(job) => job,
            other => JobError::Above(Box::new(other)),
        }
    }
}

impl From<lmdensity_core::StoreError> for ClusterError {
    fn from(err: lmdensity_core::StoreError) -> ClusterError {
        ClusterError::Job(err.into())
    }
}

/// Results of the cluster crate.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// `|source| ClusterError::Io { path, source }`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}
