//! The one resumable-run loop every measurement goes through (perplexity windows, task items,
//! bench tests): read back the finished units of an open run, skip them, compute the rest one
//! unit at a time, append each unit's samples as soon as it is done, write partial metrics when
//! a unit fails, and the final metrics when every unit is done.
//!
//! What a unit is, how a stored sample is checked against the plan, and how metrics are computed
//! from samples belong to the caller ([`Resumable`]); the bookkeeping is written once, here.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::schema::{RunMetrics, RunStatus, Sample};
use crate::store::{RunHandle, StoreError};

/// Work made of numbered units (`0..n_units()`), each producing one or more samples.
pub trait Resumable {
    /// The caller's error type; store errors convert into it.
    type Error: From<StoreError>;

    /// Units planned.
    fn n_units(&self) -> usize;

    /// Progress weight of a unit (tokens of a window, 1 for an item).
    fn weight(&self, _unit: usize) -> usize {
        1
    }

    /// The unit a stored sample belongs to, after checking that it fits this plan (an error
    /// says the run on disk is not this run).
    fn unit_of(&self, sample: &Sample, run: &RunHandle) -> Result<usize, Self::Error>;

    /// Called once with the run's finished samples as stored (a duplicated unit appears twice),
    /// before anything is computed (e.g. to refuse resuming work that must run in one pass).
    fn resuming(&mut self, _finished: &[Sample], _run: &RunHandle) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Computes one unit: its samples, in the order they are stored.
    fn compute(&mut self, unit: usize) -> Result<Vec<Sample>, Self::Error>;

    /// How many of the `pending` units (unfinished, in order) to compute together with
    /// [`Resumable::compute_group`]: 1 (the default) computes one unit per call. A group is
    /// stored only when all of it is computed, so an interruption loses at most one group.
    fn group_len(&self, _pending: &[usize]) -> usize {
        1
    }

    /// Computes several units in one call (an engine packs their work into shared decode
    /// calls): each unit's samples, in the order of `units`. The default computes them one
    /// by one.
    fn compute_group(&mut self, units: &[usize]) -> Result<Vec<Vec<Sample>>, Self::Error> {
        units.iter().map(|&u| self.compute(u)).collect()
    }

    /// The run's metrics over `samples` (finished units in unit order).
    fn metrics(&self, samples: &[Sample], status: RunStatus, elapsed_s: f64) -> RunMetrics;
}

/// Runs every unit of `work` not yet finished in `run`, appending samples as units finish, and
/// returns the final metrics (also written to the run). When a unit fails, metrics over the
/// finished units are written with status partial before the error is returned, so nothing
/// computed is lost and `--resume` continues after the last finished unit. Elapsed time adds
/// up across resumed sessions.
pub fn drive<W: Resumable>(
    work: &mut W,
    run: &mut RunHandle,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<RunMetrics, W::Error> {
    let started = Instant::now();
    let (mut kept, done) = finished_units(work, run)?;
    work.resuming(run.finished_samples(), run)?;
    let previous_elapsed = run.read_metrics()?.map_or(0.0, |m| m.elapsed_s);
    let elapsed = |started: &Instant| previous_elapsed + started.elapsed().as_secs_f64();
    let total: usize = (0..work.n_units()).map(|u| work.weight(u)).sum();
    let mut progress: usize = done.iter().map(|&u| work.weight(u)).sum();
    on_progress(progress, total);
    let pending: Vec<usize> = (0..work.n_units()).filter(|u| !done.contains(u)).collect();
    let mut next = 0;
    while next < pending.len() {
        let rest = &pending[next..];
        let group = &rest[..work.group_len(rest).clamp(1, rest.len())];
        next += group.len();
        let computed = match group {
            [unit] => work.compute(*unit).map(|samples| vec![samples]),
            _ => work.compute_group(group),
        };
        let computed = match computed {
            Ok(samples) => samples,
            Err(e) => {
                let partial = work.metrics(&in_order(&kept), RunStatus::Partial, elapsed(&started));
                run.write_metrics(&partial)?;
                return Err(e);
            }
        };
        for (&unit, samples) in group.iter().zip(computed) {
            for sample in samples {
                run.append_sample(&sample)?;
                kept.push((unit, sample));
            }
            progress += work.weight(unit);
        }
        on_progress(progress, total);
    }
    let metrics = work.metrics(&in_order(&kept), RunStatus::Complete, elapsed(&started));
    run.write_metrics(&metrics)?;
    Ok(metrics)
}

/// Kept samples of an open run with their units, and the set of finished units. A unit written
/// twice (two interrupted sessions that both finished it) keeps its first copy: the samples of
/// a unit are the first contiguous group that names it.
#[allow(clippy::type_complexity)]
fn finished_units<W: Resumable>(
    work: &W,
    run: &RunHandle,
) -> Result<(Vec<(usize, Sample)>, BTreeSet<usize>), W::Error> {
    let mut kept = Vec::new();
    let mut done = BTreeSet::new();
    let mut last: Option<usize> = None;
    for sample in run.finished_samples() {
        let unit = work.unit_of(sample, run)?;
        if last == Some(unit) || done.insert(unit) {
            kept.push((unit, sample.clone()));
        }
        last = Some(unit);
    }
    Ok((kept, done))
}

/// The samples ordered by unit (stable within a unit).
fn in_order(kept: &[(usize, Sample)]) -> Vec<Sample> {
    let mut sorted: Vec<&(usize, Sample)> = kept.iter().collect();
    sorted.sort_by_key(|(unit, _)| *unit);
    sorted.into_iter().map(|(_, s)| s.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ItemSample, Metric};
    use crate::store::ResultsStore;

    /// Items that fail at `fail_at` (once), scoring each item's index as its "value".
    struct Counting {
        n: usize,
        fail_at: Option<usize>,
        computed: Vec<usize>,
        /// Units per group (1: one at a time).
        group: usize,
    }

    #[derive(Debug)]
    enum Failure {
        Store,
        Engine,
    }

    impl From<StoreError> for Failure {
        fn from(_: StoreError) -> Self {
            Failure::Store
        }
    }

    fn item(index: usize) -> Sample {
        Sample::TaskItem(ItemSample {
            index,
            gold: 0,
            choices: Vec::new(),
        })
    }

    impl Resumable for Counting {
        type Error = Failure;
        fn n_units(&self) -> usize {
            self.n
        }
        fn unit_of(&self, sample: &Sample, _: &RunHandle) -> Result<usize, Failure> {
            match sample {
                Sample::TaskItem(i) if i.index < self.n => Ok(i.index),
                _ => Err(Failure::Engine),
            }
        }
        fn compute(&mut self, unit: usize) -> Result<Vec<Sample>, Failure> {
            if self.fail_at == Some(unit) {
                self.fail_at = None;
                return Err(Failure::Engine);
            }
            self.computed.push(unit);
            Ok(vec![item(unit)])
        }
        fn group_len(&self, _pending: &[usize]) -> usize {
            self.group
        }
        fn metrics(&self, samples: &[Sample], status: RunStatus, elapsed_s: f64) -> RunMetrics {
            let indices: Vec<f64> = samples
                .iter()
                .filter_map(|s| match s {
                    Sample::TaskItem(i) => Some(i.index as f64),
                    _ => None,
                })
                .collect();
            RunMetrics {
                schema_version: crate::SCHEMA_VERSION,
                status,
                elapsed_s,
                metrics: vec![
                    Metric::new("n", indices.len() as f64, None, "items", "count".into()),
                    // Order check: the first sample's index.
                    Metric::new(
                        "first",
                        indices.first().copied().unwrap_or(-1.0),
                        None,
                        "",
                        String::new(),
                    ),
                ],
            }
        }
    }

    fn manifest() -> crate::RunManifest {
        crate::RunManifest {
            schema_version: crate::SCHEMA_VERSION,
            run_id: "driver-test".into(),
            kind: "task".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            model: Default::default(),
            backend: Default::default(),
            hardware: crate::hardware::Hardware::default(),
            software: Default::default(),
            settings: Default::default(),
            resume_key: "k".into(),
        }
    }

    #[test]
    fn a_failed_unit_leaves_partial_metrics_and_resuming_computes_only_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(dir.path());
        let mut run = store.create_run(manifest()).expect("run");
        let mut work = Counting {
            n: 5,
            fail_at: Some(3),
            computed: Vec::new(),
            group: 1,
        };
        assert!(drive(&mut work, &mut run, &mut |_, _| {}).is_err());
        let partial = run.read_metrics().expect("read").expect("partial metrics");
        assert_eq!(partial.status, RunStatus::Partial);
        assert_eq!(partial.get("n").expect("n").value, 3.0);

        let mut run = store.find_resumable("k").expect("find").expect("resumable");
        let mut seen = Vec::new();
        let mut work = Counting {
            n: 5,
            fail_at: None,
            computed: Vec::new(),
            group: 1,
        };
        let done = drive(&mut work, &mut run, &mut |d, t| seen.push((d, t))).expect("finish");
        assert_eq!(
            work.computed,
            vec![3, 4],
            "units 0-2 were kept, not recomputed"
        );
        assert_eq!(done.status, RunStatus::Complete);
        assert_eq!(done.get("n").expect("n").value, 5.0);
        assert_eq!(
            seen.first(),
            Some(&(3, 5)),
            "progress starts at the kept units"
        );
        assert_eq!(seen.last(), Some(&(5, 5)));
    }

    #[test]
    fn a_failed_group_keeps_the_groups_before_it_and_resuming_computes_it_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(dir.path());
        let mut run = store.create_run(manifest()).expect("run");
        let mut work = Counting {
            n: 7,
            fail_at: Some(3),
            computed: Vec::new(),
            group: 2,
        };
        let mut seen = Vec::new();
        assert!(drive(&mut work, &mut run, &mut |d, t| seen.push((d, t))).is_err());
        assert_eq!(
            seen,
            vec![(0, 7), (2, 7)],
            "progress moves a group at a time"
        );
        let partial = run.read_metrics().expect("read").expect("partial metrics");
        assert_eq!(
            partial.get("n").expect("n").value,
            2.0,
            "unit 2 was computed, but its group (2, 3) failed and is not stored"
        );
        let mut run = store.find_resumable("k").expect("find").expect("resumable");
        let mut work = Counting {
            n: 7,
            fail_at: None,
            computed: Vec::new(),
            group: 3,
        };
        let done = drive(&mut work, &mut run, &mut |_, _| {}).expect("finish");
        assert_eq!(work.computed, vec![2, 3, 4, 5, 6]);
        assert_eq!(done.get("n").expect("n").value, 7.0);
        assert_eq!(done.get("first").expect("first").value, 0.0);
    }

    #[test]
    fn duplicated_units_keep_their_first_copy_and_samples_are_in_unit_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(dir.path());
        let mut run = store.create_run(manifest()).expect("run");
        for i in [2, 0, 2] {
            run.append_sample(&item(i)).expect("append");
        }
        drop(run);
        let mut run = store.find_resumable("k").expect("find").expect("resumable");
        let mut work = Counting {
            n: 3,
            fail_at: None,
            computed: Vec::new(),
            group: 1,
        };
        let done = drive(&mut work, &mut run, &mut |_, _| {}).expect("finish");
        assert_eq!(work.computed, vec![1]);
        assert_eq!(
            done.get("n").expect("n").value,
            3.0,
            "the second copy of 2 is dropped"
        );
        assert_eq!(done.get("first").expect("first").value, 0.0);
    }

    #[test]
    fn a_sample_of_another_plan_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(dir.path());
        let mut run = store.create_run(manifest()).expect("run");
        run.append_sample(&item(9)).expect("append");
        let mut work = Counting {
            n: 3,
            fail_at: None,
            computed: Vec::new(),
            group: 1,
        };
        let mut run = store.find_resumable("k").expect("find").expect("resumable");
        assert!(matches!(
            drive(&mut work, &mut run, &mut |_, _| {}),
            Err(Failure::Engine)
        ));
        assert!(work.computed.is_empty());
    }
}
