//! Scoring task items with the scoring primitive, and the metrics computed from the scores.

use lmdensity_backend::{LanguageModel, ScoreRequest, TokenId};
use lmdensity_core::{
    ChoiceScore, ItemSample, Metric, RunHandle, RunMetrics, RunStatus, Sample, SCHEMA_VERSION,
};

use lmdensity_core::driver::{drive, Resumable};
use lmdensity_core::stats::{argmax, mean_and_stderr};
use lmdensity_core::store::StoredRun;

use crate::items::Item;
use crate::spec::{TaskKind, TaskSet, TaskSpec};
use crate::TaskError;

/// How requests are tokenized.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    /// Prefix BOS to every request (lm-eval does so for Gemma models only).
    pub prefix_bos: Option<TokenId>,
    /// Longest sequence the engine takes; longer requests lose context from the left.
    pub max_len: usize,
}

/// Tokenizes a (context, continuation) pair as lm-eval's `_encode_pair`: trailing spaces of the
/// context move to the continuation; the continuation's tokens are those of
/// tokenize(context + continuation) after the context's own token count.
pub fn encode_pair(
    model: &dyn LanguageModel,
    context: &str,
    continuation: &str,
    encoding: Encoding,
) -> Result<ScoreRequest, String> {
    let trimmed = context.trim_end_matches(' ');
    let moved = &context[trimmed.len()..];
    let continuation = format!("{moved}{continuation}");
    let context_tokens = model.tokenize(trimmed, false).map_err(|e| e.to_string())?;
    let mut whole = model
        .tokenize(&format!("{trimmed}{continuation}"), false)
        .map_err(|e| e.to_string())?;
    let mut score_from = context_tokens.len();
    if let Some(bos) = encoding.prefix_bos {
        whole.insert(0, bos);
        score_from += 1;
    }
    if score_from == 0 {
        return Err("empty context and no BOS: the first token has nothing to condition on".into());
    }
    if score_from >= whole.len() {
        return Err(format!(
            "continuation {continuation:?} tokenizes to nothing"
        ));
    }
    // Left-truncate to the engine's length, keeping every continuation token.
    let excess = whole.len().saturating_sub(encoding.max_len + 1);
    if excess >= score_from {
        return Err(format!(
            "continuation of {} tokens does not fit the context of {}",
            whole.len() - score_from,
            encoding.max_len
        ));
    }
    whole.drain(..excess);
    Ok(ScoreRequest {
        tokens: whole,
        score_from: score_from - excess,
    })
}

/// Scores every item not yet in `run` (resuming), appending one sample per item, and returns
/// the final metrics. On an engine error, metrics over the finished items are written as
/// partial before the error is returned.
pub fn run_task(
    model: &mut dyn LanguageModel,
    spec: &TaskSpec,
    items: &[Item],
    encoding: Encoding,
    run: &mut RunHandle,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<RunMetrics, TaskError> {
    let mut work = ItemWork {
        model,
        spec,
        items,
        encoding,
        resumed: false,
    };
    drive(&mut work, run, on_progress)
}

/// A task run as units of the resumable-run driver: one item per unit (`items[u].index == u`).
struct ItemWork<'a> {
    model: &'a mut dyn LanguageModel,
    spec: &'a TaskSpec,
    items: &'a [Item],
    encoding: Encoding,
    /// Whether the run held finished items before this session (its elapsed time then covers
    /// sessions whose decoded tokens this one did not count).
    resumed: bool,
}

/// Text, in bytes, of the items one packed scoring call gets (about 8k tokens).
const GROUP_BYTES: usize = 32 * 1024;
/// Most items one packed scoring call gets.
const GROUP_ITEMS: usize = 128;

impl ItemWork<'_> {
    /// The item's requests, tokenized.
    fn requests_of(&self, item: &Item) -> Result<Vec<ScoreRequest>, TaskError> {
        item.requests
            .iter()
            .map(|(context, continuation)| {
                encode_pair(&*self.model, context, continuation, self.encoding)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|what| TaskError::Document {
                task: self.spec.name.clone(),
                index: item.index,
                what,
            })
    }
}

/// The item's sample from its choices' scores.
fn sample_of(item: &Item, scores: &[Vec<lmdensity_backend::TokenScore>]) -> Sample {
    let choices = scores
        .iter()
        .zip(&item.requests)
        .zip(&item.choice_texts)
        .map(|((s, (_, continuation)), text)| ChoiceScore {
            loglikelihood: s.iter().map(|t| t.logprob).sum(),
            is_greedy: s.iter().all(|t| t.is_greedy),
            n_tokens: s.len(),
            n_chars: text.chars().count(),
            n_bytes: continuation.len(),
        })
        .collect();
    Sample::TaskItem(ItemSample {
        index: item.index,
        gold: item.gold,
        choices,
    })
}

impl Resumable for ItemWork<'_> {
    type Error = TaskError;

    fn n_units(&self) -> usize {
        self.items.len()
    }

    fn unit_of(&self, sample: &Sample, run: &RunHandle) -> Result<usize, TaskError> {
        match sample {
            Sample::TaskItem(item) if item.index < self.items.len() => Ok(item.index),
            _ => Err(foreign_sample(run, self.spec, self.items.len(), "items")),
        }
    }

    fn resuming(&mut self, finished: &[Sample], _run: &RunHandle) -> Result<(), TaskError> {
        self.resumed = !finished.is_empty();
        Ok(())
    }

    fn compute(&mut self, unit: usize) -> Result<Vec<Sample>, TaskError> {
        let item = &self.items[unit];
        let requests = self.requests_of(item)?;
        let scores = self.model.score(&requests)?;
        Ok(vec![sample_of(item, &scores)])
    }

    /// Items go to an engine that packs them many per decode call in groups of about
    /// `GROUP_BYTES` of text (at most `GROUP_ITEMS`): big enough to fill many full batches,
    /// small enough that progress moves and an interruption loses little.
    fn group_len(&self, pending: &[usize]) -> usize {
        if !self.model.packs_independent_requests() {
            return 1;
        }
        let mut bytes = 0;
        pending
            .iter()
            .take(GROUP_ITEMS)
            .take_while(|&&unit| {
                let fits = bytes < GROUP_BYTES;
                bytes += self.items[unit]
                    .requests
                    .iter()
                    .map(|(context, continuation)| context.len() + continuation.len())
                    .sum::<usize>();
                fits
            })
            .count()
    }

    fn compute_group(&mut self, units: &[usize]) -> Result<Vec<Vec<Sample>>, TaskError> {
        let mut requests = Vec::new();
        let mut ends = Vec::with_capacity(units.len());
        for &unit in units {
            requests.extend(self.requests_of(&self.items[unit])?);
            ends.push(requests.len());
        }
        let scores = self.model.score(&requests)?;
        let mut from = 0;
        Ok(units
            .iter()
            .zip(ends)
            .map(|(&unit, end)| {
                let sample = sample_of(&self.items[unit], &scores[from..end]);
                from = end;
                vec![sample]
            })
            .collect())
    }

    fn metrics(&self, samples: &[Sample], status: RunStatus, elapsed_s: f64) -> RunMetrics {
        let items: Vec<ItemSample> = samples
            .iter()
            .filter_map(|s| match s {
                Sample::TaskItem(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        let mut out = metrics(self.spec, &items, status, elapsed_s);
        let tokens = self.model.tokens_decoded();
        if tokens > 0 && !self.resumed && elapsed_s > 0.0 {
            out.metrics.push(Metric {
                name: format!("{}/decode_tokens_per_s", self.spec.name),
                value: tokens as f64 / elapsed_s,
                stderr: None,
                unit: "tokens/s".into(),
                how: format!(
                    "{tokens} tokens through the model in decode calls (shared tokens once) over the run's {elapsed_s:.1} s of scoring, tokenization and log-softmax included; compare with `bench -p 512`"
                ),
            });
        }
        out
    }
}

/// The error for a stored sample that is not one of the task's `n_items` units (`what`: items,
/// generations), met when resuming a run.
pub(crate) fn foreign_sample(
    run: &RunHandle,
    spec: &TaskSpec,
    n_items: usize,
    what: &str,
) -> TaskError {
    TaskError::Resume(format!(
        "{}: holds samples that are not {what} of {} ({n_items} items)",
        run.dir().display(),
        spec.name
    ))
}

/// A group's accuracy over the tasks of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupScore {
    /// Group name.
    pub name: String,
    /// Tasks averaged.
    pub tasks: usize,
    /// Items over all tasks.
    pub items: usize,
    /// Items-weighted mean accuracy (lm-eval's `weight_by_size` aggregate).
    pub acc: f64,
    /// Its standard error, √Σ (nᵢ/N)² seᵢ² (tasks as independent samples).
    pub acc_stderr: f64,
    /// Unweighted mean of the tasks' accuracies.
    pub acc_macro: f64,
}

/// Aggregates `<task>/acc` over each declared group all of whose tasks are among `runs`.
pub fn aggregate_groups(set: &TaskSet, runs: &[StoredRun]) -> Vec<GroupScore> {
    let value = |run: &StoredRun, metric: &str| {
        run.metrics.as_ref().and_then(|m| {
            m.metrics
                .iter()
                .find(|x| x.name == metric)
                .map(|x| (x.value, x.stderr))
        })
    };
    let mut out = Vec::new();
    for group in &set.groups {
        let members: Vec<&TaskSpec> = set
            .tasks
            .iter()
            .filter(|t| t.groups.contains(&group.name))
            .collect();
        let mut parts = Vec::new();
        for task in &members {
            let run = runs.iter().find(|r| {
                r.manifest.settings.get("task").and_then(|t| t.as_str()) == Some(task.name.as_str())
            });
            let found = run.and_then(|r| {
                let (acc, se) = value(r, &format!("{}/acc", task.name))?;
                let (n, _) = value(r, &format!("{}/items", task.name))?;
                Some((n, acc, se.unwrap_or(0.0)))
            });
            match found {
                Some(p) => parts.push(p),
                None => break,
            }
        }
        if parts.len() != members.len() || parts.is_empty() {
            continue;
        }
        let total: f64 = parts.iter().map(|p| p.0).sum();
        let acc = parts.iter().map(|p| p.0 * p.1).sum::<f64>() / total;
        let var: f64 = parts
            .iter()
            .map(|p| (p.0 / total).powi(2) * p.2.powi(2))
            .sum();
        out.push(GroupScore {
            name: group.name.clone(),
            tasks: parts.len(),
            items: total as usize,
            acc,
            acc_stderr: var.sqrt(),
            acc_macro: parts.iter().map(|p| p.1).sum::<f64>() / parts.len() as f64,
        });
    }
    out
}

/// The task's metrics over `samples`, named `<task>/<metric>`.
pub fn metrics(
    spec: &TaskSpec,
    samples: &[ItemSample],
    status: RunStatus,
    elapsed_s: f64,
) -> RunMetrics {
    let name = |m: &str| format!("{}/{m}", spec.name);
    let mut out = vec![Metric {
        name: name("items"),
        value: samples.len() as f64,
        stderr: None,
        unit: "items".into(),
        how: format!(
            "{} items of {} ({}) scored",
            samples.len(),
            spec.name,
            spec.split
        ),
    }];
    if samples.is_empty() {
        return RunMetrics {
            schema_version: SCHEMA_VERSION,
            status,
            elapsed_s,
            metrics: out,
        };
    }
    let hit = |pick: &dyn Fn(&ItemSample) -> usize| -> Vec<f64> {
        samples
            .iter()
            .map(|s| f64::from(u8::from(pick(s) == s.gold)))
            .collect()
    };
    let single_target = spec.kind == TaskKind::Loglikelihood;
    for metric in &spec.metrics {
        if single_target && metric == "perplexity" {
            let lls: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.choices.first().map(|c| c.loglikelihood))
                .collect();
            let (mean_ll, se) = mean_and_stderr(&lls);
            let ppl = (-mean_ll).exp();
            out.push(Metric {
                name: name("perplexity"),
                value: ppl,
                stderr: se.map(|se| ppl * se),
                unit: "perplexity".into(),
                how: "exp(−mean over items of ln p(target | context)) (lm-eval perplexity); stderr by the delta method".into(),
            });
            continue;
        }
        let (values, how) = match metric.as_str() {
            "acc" if single_target => (
                samples
                    .iter()
                    .map(|s| f64::from(u8::from(s.choices.first().is_some_and(|c| c.is_greedy))))
                    .collect(),
                "fraction of items whose every target token is the model's argmax (lm-eval greedy-match acc)",
            ),
            "acc" => (
                hit(&|s| argmax(s.choices.iter().map(|c| c.loglikelihood))),
                "fraction of items whose gold choice has the highest log-likelihood (lm-eval acc)",
            ),
            "acc_norm" => (
                hit(&|s| argmax(s.choices.iter().map(|c| c.loglikelihood / c.n_chars.max(1) as f64))),
                "the same with log-likelihood divided by the choice's characters (lm-eval acc_norm)",
            ),
            "acc_bytes" => (
                hit(&|s| argmax(s.choices.iter().map(|c| c.loglikelihood / c.n_bytes.max(1) as f64))),
                "the same with log-likelihood divided by the continuation's UTF-8 bytes",
            ),
            _ => continue,
        };
        let (value, stderr) = mean_and_stderr(&values);
        out.push(Metric {
            name: name(metric),
            value,
            stderr,
            unit: "fraction".into(),
            how: how.into(),
        });
        if metric == "acc" {
            out.push(Metric {
                name: name("error"),
                value: 1.0 - value,
                stderr,
                unit: "fraction".into(),
                how: "top-1 error = 1 − acc".into(),
            });
        }
    }
    out.extend(gold_loss(spec, samples));
    RunMetrics {
        schema_version: SCHEMA_VERSION,
        status,
        elapsed_s,
        metrics: out,
    }
}

/// The conditional loss of the gold continuations: nats per token and bits per byte.
fn gold_loss(spec: &TaskSpec, samples: &[ItemSample]) -> Vec<Metric> {
    let name = |m: &str| format!("{}/{m}", spec.name);
    let mut out = Vec::new();
    let gold: Vec<&ChoiceScore> = samples
        .iter()
        .filter_map(|s| s.choices.get(s.gold))
        .collect();
    let nll: f64 = gold.iter().map(|c| -c.loglikelihood).sum();
    let tokens: usize = gold.iter().map(|c| c.n_tokens).sum();
    let bytes: usize = gold.iter().map(|c| c.n_bytes).sum();
    // A ratio of sums over items: its stderr by the delta method (the ratio estimator's
    // linearisation), from each item's residual −ll − ratio·size.
    let ratio_stderr = |size: &dyn Fn(&ChoiceScore) -> usize| {
        let n = gold.len();
        let total: usize = gold.iter().map(|c| size(c)).sum();
        if n < 2 || total == 0 {
            return None;
        }
        let ratio = nll / total as f64;
        let ss: f64 = gold
            .iter()
            .map(|c| (-c.loglikelihood - ratio * size(c) as f64).powi(2))
            .sum();
        Some((ss / (n - 1) as f64 * n as f64).sqrt() / total as f64)
    };
    out.push(Metric {
        name: name("gold_nll_per_token"),
        value: nll / tokens.max(1) as f64,
        stderr: ratio_stderr(&|c| c.n_tokens),
        unit: "nats/token".into(),
        how: format!(
            "conditional loss: Σ −ln p(gold continuation | context) / {tokens} gold tokens; stderr by the delta method over items"
        ),
    });
    out.push(Metric {
        name: name("gold_bits_per_byte"),
        value: nll / (bytes.max(1) as f64 * std::f64::consts::LN_2),
        stderr: ratio_stderr(&|c| c.n_bytes).map(|se| se / std::f64::consts::LN_2),
        unit: "bits/byte".into(),
        how: format!(
            "conditional loss: Σ −ln p(gold continuation | context) / ({bytes} bytes · ln 2); stderr by the delta method over items"
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSet;

    fn sample(gold: usize, lls: &[(f64, usize)]) -> ItemSample {
        ItemSample {
            index: 0,
            gold,
            choices: lls
                .iter()
                .map(|&(ll, chars)| ChoiceScore {
                    loglikelihood: ll,
                    is_greedy: false,
                    n_tokens: 2,
                    n_chars: chars,
                    n_bytes: chars + 1,
                })
                .collect(),
        }
    }

    #[test]
    fn acc_and_acc_norm_follow_lm_eval() {
        let spec = TaskSet::builtin()
            .tasks
            .into_iter()
            .find(|t| t.name == "piqa")
            .expect("piqa");
        // Item 1: raw ll prefers choice 0, per-character prefers choice 1 (the gold).
        let samples = [
            sample(1, &[(-4.0, 2), (-6.0, 20)]),
            sample(0, &[(-1.0, 5), (-2.0, 5)]),
        ];
        let m = metrics(&spec, &samples, RunStatus::Complete, 0.0);
        let get = |n: &str| {
            m.metrics
                .iter()
                .find(|x| x.name == n)
                .map(|x| x.value)
                .expect(n)
        };
        assert_eq!(get("piqa/acc"), 0.5);
        assert_eq!(get("piqa/acc_norm"), 1.0);
        assert_eq!(get("piqa/error"), 0.5);
        assert!((get("piqa/gold_nll_per_token") - (6.0 + 1.0) / 4.0).abs() < 1e-12);
        let stderr = m
            .metrics
            .iter()
            .find(|x| x.name == "piqa/acc")
            .and_then(|x| x.stderr)
            .expect("stderr");
        assert!((stderr - 0.5).abs() < 1e-12, "{stderr}");
        assert_eq!(argmax([1.0, 3.0, 3.0].into_iter()), 1);
    }
}
