//! Laws fitted to measurements: Gadre et al. 2024's loss→error and over-training laws,
//! Chinchilla's L(N, D), the Densing Law's loss and performance estimation, effective parameter
//! size N̂ and density ρ = N̂/N, and the density trend ln ρ_max = A·t + B over release dates.
//!
//! Every fit goes through [`fit::fit_with`]: multi-start from a grid, with a
//! [`fit::LeastSquares`] solver (Levenberg–Marquardt with bounds) or [`robust::HuberLse`]
//! (Hoffmann et al.'s Huber objective on log-loss, L-BFGS), then bootstrap intervals, R² and
//! leave-one-out errors. Degenerate data is refused with a [`LawError`].

pub mod chinchilla;
pub mod densing;
pub mod effective;
pub mod fit;
pub mod gadre;
pub mod loss_curve;
pub mod obsscaling;
pub mod placement;
pub mod reference;
pub mod reproduction;
pub mod robust;
pub mod trend;

pub use fit::{fit, BandPoint, Bound, FitOptions, FitReport, Law, Parameter, Point, ResidualScale};

/// Why a law could not be fitted or used.
#[derive(Debug, thiserror::Error)]
pub enum LawError {
    /// Fewer points than the law has parameters.
    #[error("{law}: {got} point(s) cannot determine {needed} parameters; measure at least {needed} (more for a meaningful fit)")]
    TooFewPoints {
        /// Law name.
        law: String,
        /// Parameters of the law.
        needed: usize,
        /// Points supplied.
        got: usize,
    },
    /// An input does not vary across the points.
    #[error("{law}: every point has the same {input}; the law's dependence on {input} cannot be fitted without points at different {input}")]
    NoSpread {
        /// Law name.
        law: String,
        /// Input name.
        input: String,
    },
    /// The optimiser did not converge.
    #[error("{law}: the fit did not converge ({detail})")]
    NotConverged {
        /// Law name.
        law: String,
        /// What happened.
        detail: String,
    },
    /// Malformed or non-finite input.
    #[error("{0}")]
    BadInput(String),
    /// A value outside the range a fitted law can produce or invert.
    #[error("{0}")]
    OutOfRange(String),
    /// A reference data file could not be read.
    #[error("{path}: {detail}")]
    Data {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}
