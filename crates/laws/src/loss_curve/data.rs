//! Loss curves as data: a `step,lr,loss` CSV read with errors that name the file, row and
//! column ([`read_curve`]), its per-step schedule ([`resolve_schedule`]), and the points a
//! law is fitted to or judged on ([`Curve`]).

use std::path::Path;

use super::schedule::{KnownSchedule, Schedule};
use crate::LawError;

/// A loss curve as logged: the CSV's rows.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedCurve {
    /// The file, as given.
    pub path: String,
    /// Its stem (`cosine_24000`), which may name its schedule.
    pub name: String,
    /// Logged steps, increasing.
    pub steps: Vec<usize>,
    /// The learning rate at each logged step.
    pub lrs: Vec<f64>,
    /// The training loss at each logged step.
    pub losses: Vec<f64>,
}

/// Reads a `step,lr,loss` CSV (header row; other columns are ignored).
pub fn read_curve(path: &Path) -> Result<LoggedCurve, LawError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LawError::Data {
        path: shown.clone(),
        detail: format!("cannot read it: {e}"),
    })?;
    let mut curve = parse_curve(&text, &shown)?;
    curve.name = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    Ok(curve)
}

/// Parses a `step,lr,loss` CSV; `path` names it in errors. Steps must increase; learning
/// rates must be finite and not negative, losses finite and positive.
pub fn parse_curve(text: &str, path: &str) -> Result<LoggedCurve, LawError> {
    let error = |detail: String| LawError::Data {
        path: path.to_string(),
        detail,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| error(format!("no header row: {e}")))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            error(format!(
                "no column {name:?} (columns: {}); a loss curve needs the columns step,lr,loss",
                headers.iter().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let (step_col, lr_col, loss_col) = (column("step")?, column("lr")?, column("loss")?);
    let mut curve = LoggedCurve {
        path: path.to_string(),
        name: String::new(),
        steps: Vec::new(),
        lrs: Vec::new(),
        losses: Vec::new(),
    };
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        let record = record.map_err(|e| error(format!("row {row}: {e}")))?;
        let cell = |c: usize| record.get(c).unwrap_or("");
        let number = |c: usize| -> Result<f64, LawError> {
            let value: f64 = cell(c).parse().map_err(|_| {
                error(format!(
                    "row {row}, column {:?}: {:?} is not a number",
                    &headers[c],
                    cell(c)
                ))
            })?;
            if !value.is_finite() {
                return Err(error(format!(
                    "row {row}, column {:?}: {value} is not finite",
                    &headers[c]
                )));
            }
            Ok(value)
        };
        let step = number(step_col)?;
        if step < 0.0 || step.fract() != 0.0 || step > 1e12 {
            return Err(error(format!(
                "row {row}, column \"step\": {step} is not a step (a whole number ≥ 0)"
            )));
        }
        let step = step as usize;
        if let Some(&previous) = curve.steps.last() {
            if step <= previous {
                return Err(error(format!(
                    "row {row}: step {step} does not come after step {previous} of row {} (steps must increase)",
                    row - 1
                )));
            }
        }
        let (lr, loss) = (number(lr_col)?, number(loss_col)?);
        if lr < 0.0 {
            return Err(error(format!("row {row}, column \"lr\": {lr} is negative")));
        }
        if loss <= 0.0 {
            return Err(error(format!(
                "row {row}, column \"loss\": {loss} is not positive"
            )));
        }
        curve.steps.push(step);
        curve.lrs.push(lr);
        curve.losses.push(loss);
    }
    if curve.steps.is_empty() {
        return Err(error("no data rows".into()));
    }
    Ok(curve)
}

/// Luo et al.'s schedule named `name`, or `logged` for the file's own lr column; `None`: the
/// file's stem when it names a schedule, else its lr column. A named schedule must agree with
/// the logged learning rates (within 1%) wherever both exist. `last` is the last step a logged
/// schedule must cover.
pub fn resolve_schedule(
    logged: &LoggedCurve,
    name: Option<&str>,
    last: usize,
) -> Result<Schedule, LawError> {
    let known = match name {
        Some("logged") => None,
        Some(name) => Some(KnownSchedule::parse(name).ok_or_else(|| {
            LawError::BadInput(format!(
                "unknown learning-rate schedule {name:?}: expected cosine_T, constant_T, wsd_D_T, wsdld_D_T, wsdcon_K (Luo et al.'s runs) or logged (the file's lr column)"
            ))
        })?),
        None => KnownSchedule::parse(&logged.name),
    };
    let Some(known) = known else {
        return Schedule::from_logged(&logged.steps, &logged.lrs, last).map_err(|e| {
            LawError::Data {
                path: logged.path.clone(),
                detail: e.to_string(),
            }
        });
    };
    for (i, (&step, &lr)) in logged.steps.iter().zip(&logged.lrs).enumerate() {
        if step >= known.total() {
            break;
        }
        let expected = known.rate(step);
        if (lr - expected).abs() > 0.01 * expected.abs().max(1e-12) {
            return Err(LawError::Data {
                path: logged.path.clone(),
                detail: format!(
                    "row {}: lr {lr} at step {step} is not schedule {}'s {expected:.6e}; use the file's lr column (schedule `logged`) or name the right schedule",
                    i + 2,
                    known.name()
                ),
            });
        }
    }
    Ok(Schedule::known(known))
}

/// A loss curve on its per-step schedule: the points a law is fitted to or judged on.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Its name (the file stem).
    pub name: String,
    /// The learning rate of every step.
    pub schedule: Schedule,
    /// Steps of the points, increasing, each ≥ 1 and below the schedule's length.
    pub steps: Vec<usize>,
    /// Losses at those steps.
    pub losses: Vec<f64>,
}

impl Curve {
    /// The logged points on `schedule`. Points at steps the schedule does not cover are cut
    /// (for the 24000-step schedules exactly the authors' `step < 24000`), and a point at step
    /// 0 is left out (S1 = η₀ = 0 there, where both laws are infinite).
    pub fn on_schedule(logged: &LoggedCurve, schedule: Schedule) -> Curve {
        let keep: Vec<usize> = (0..logged.steps.len())
            .filter(|&i| logged.steps[i] >= 1 && logged.steps[i] < schedule.len())
            .collect();
        Curve {
            name: logged.name.clone(),
            steps: keep.iter().map(|&i| logged.steps[i]).collect(),
            losses: keep.iter().map(|&i| logged.losses[i]).collect(),
            schedule,
        }
    }

    /// The points at steps ≤ `step`.
    pub fn until(&self, step: usize) -> Curve {
        let n = self.steps.partition_point(|&s| s <= step);
        Curve {
            name: self.name.clone(),
            schedule: self.schedule.clone(),
            steps: self.steps[..n].to_vec(),
            losses: self.losses[..n].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_error(text: &str) -> String {
        match parse_curve(text, "run.csv") {
            Err(LawError::Data { path, detail }) => {
                assert_eq!(path, "run.csv");
                detail
            }
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    #[test]
    fn a_curve_parses_with_extra_columns_and_spaces() {
        let curve = parse_curve(
            "step, lr, loss, note\n1, 1e-4, 4.5, a\n5, 2e-4, 4.0, b\n",
            "x",
        )
        .expect("valid");
        assert_eq!(curve.steps, vec![1, 5]);
        assert_eq!(curve.lrs, vec![1e-4, 2e-4]);
        assert_eq!(curve.losses, vec![4.5, 4.0]);
    }

    #[test]
    fn bad_rows_are_refused_naming_row_and_column() {
        let missing = data_error("step,loss\n1,4.0\n");
        assert!(missing.contains("no column \"lr\""), "{missing}");
        assert!(missing.contains("step,lr,loss"), "{missing}");
        let repeated = data_error("step,lr,loss\n100,1e-4,4.0\n100,1e-4,3.9\n");
        assert!(repeated.contains("row 3: step 100 does not come after step 100 of row 2"));
        let backwards = data_error("step,lr,loss\n100,1e-4,4.0\n50,1e-4,3.9\n");
        assert!(backwards.contains("steps must increase"), "{backwards}");
        let nan = data_error("step,lr,loss\n1,1e-4,nan\n");
        assert!(
            nan.contains("row 2, column \"loss\": NaN is not finite"),
            "{nan}"
        );
        let text = data_error("step,lr,loss\n1,fast,4.0\n");
        assert!(
            text.contains("row 2, column \"lr\": \"fast\" is not a number"),
            "{text}"
        );
        let fraction = data_error("step,lr,loss\n1.5,1e-4,4.0\n");
        assert!(fraction.contains("is not a step"), "{fraction}");
        assert!(data_error("step,lr,loss\n1,-1e-4,4.0\n").contains("negative"));
        assert!(data_error("step,lr,loss\n1,1e-4,0\n").contains("not positive"));
        assert!(data_error("step,lr,loss\n").contains("no data rows"));
    }

    #[test]
    fn schedules_resolve_from_the_name_the_stem_or_the_column() {
        let mut logged =
            parse_curve("step,lr,loss\n2176,0.0003,4.07\n8000,3e-5,3.5\n", "x").expect("valid");
        logged.name = "wsdcon_3".into();
        let schedule = resolve_schedule(&logged, None, 0).expect("known");
        assert_eq!(schedule.len(), 16000);
        let column = resolve_schedule(&logged, Some("logged"), 9000).expect("logged");
        assert_eq!(column.len(), 9001);
        let wrong = resolve_schedule(&logged, Some("wsdcon_9"), 0).expect_err("mismatch");
        assert!(
            wrong.to_string().contains("row 3: lr 0.00003 at step 8000"),
            "{wrong}"
        );
        let unknown = resolve_schedule(&logged, Some("cosine"), 0).expect_err("unknown");
        assert!(unknown
            .to_string()
            .contains("unknown learning-rate schedule"));
        logged.name = "my_run".into();
        let fallback = resolve_schedule(&logged, None, 8000).expect("logged");
        assert_eq!(
            fallback.source,
            super::super::schedule::ScheduleSource::Logged
        );
    }

    #[test]
    fn points_outside_the_schedule_are_cut() {
        let logged =
            parse_curve("step,lr,loss\n0,0,9\n10,1,5\n20,1,4\n30,1,3\n", "x").expect("valid");
        let schedule = Schedule::from_logged(&logged.steps, &logged.lrs, 25).expect("rates");
        let schedule = Schedule {
            rates: schedule.rates[..25].to_vec(),
            ..schedule
        };
        let curve = Curve::on_schedule(&logged, schedule);
        assert_eq!(curve.steps, vec![10, 20]);
        assert_eq!(curve.until(15).steps, vec![10]);
    }
}
