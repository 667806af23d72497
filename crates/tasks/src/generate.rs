//! Generative tasks (lm-eval's `generate_until`): greedy generation until a stop sequence, an
//! end-of-generation token or the token budget; answers extracted by regex filters and held
//! against the reference by exact match.

use lmdensity_backend::{GenerateRequest, GeneratedToken, LanguageModel, TokenId};
use lmdensity_core::driver::{drive, Resumable};
use lmdensity_core::stats::mean_and_stderr;
use lmdensity_core::{
    ExecutionOutcome, GenerationSample, Metric, RunHandle, RunMetrics, RunStatus, Sample,
    StopReason, SCHEMA_VERSION,
};
use regex::Regex;

use crate::items::Item;
use crate::math_answer::normalize_final_answer;
use crate::sandbox::{PythonSandbox, SandboxLimits};
use crate::score::foreign_sample;
use crate::spec::{AnswerFilter, AnswerNormalization, TaskSpec};
use crate::TaskError;

/// What one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The tokens generated (the stopping token included).
    pub tokens: Vec<TokenId>,
    /// Their text, cut before the first stop sequence.
    pub text: String,
    /// Why it ended.
    pub stop: StopReason,
}

/// Watches one sequence's text for its stop sequences.
#[derive(Debug, Default)]
struct StopWatch {
    bytes: Vec<u8>,
    stop: Option<StopReason>,
}

impl StopWatch {
    /// Takes the next token; returns whether generation goes on.
    fn push(&mut self, token: &GeneratedToken<'_>, until: &[String]) -> bool {
        if token.end_of_generation {
            self.stop = Some(StopReason::EndOfGeneration);
            return false;
        }
        let before = self.bytes.len();
        self.bytes.extend_from_slice(token.bytes);
        for sequence in until.iter().filter(|s| !s.is_empty()) {
            // Only a match that ends in the new bytes is new.
            let from = before.saturating_sub(sequence.len() - 1);
            if find(&self.bytes[from..], sequence.as_bytes()).is_some() {
                self.stop = Some(StopReason::StopSequence {
                    sequence: sequence.clone(),
                });
                return false;
            }
        }
        true
    }

    /// The text before the first stop sequence (lm-eval splits at each `until` in turn, which
    /// keeps the text before the earliest one).
    fn text(&self, until: &[String]) -> String {
        let end = until
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| find(&self.bytes, s.as_bytes()))
            .min()
            .unwrap_or(self.bytes.len());
        String::from_utf8_lossy(&self.bytes[..end]).into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Generates greedily from every prompt until one of `until` appears, an end-of-generation
/// token, or `max_new_tokens`; as many sequences at once as the engine decodes together.
pub fn generate_until(
    model: &mut dyn LanguageModel,
    prompts: &[&[TokenId]],
    until: &[String],
    max_new_tokens: usize,
) -> Result<Vec<Generation>, lmdensity_backend::BackendError> {
    let requests: Vec<GenerateRequest> = prompts
        .iter()
        .map(|p| GenerateRequest {
            prompt: p.to_vec(),
            max_new_tokens,
        })
        .collect();
    let mut watches: Vec<StopWatch> = prompts.iter().map(|_| StopWatch::default()).collect();
    let mut watch = |token: &GeneratedToken<'_>| match watches.get_mut(token.request) {
        Some(w) => w.push(token, until),
        None => false,
    };
    let tokens = model.generate_greedy(&requests, &mut watch)?;
    Ok(tokens
        .into_iter()
        .zip(&watches)
        .map(|(tokens, w)| Generation {
            text: w.text(until),
            stop: w.stop.clone().unwrap_or(StopReason::TokenBudget),
            tokens,
        })
        .collect())
}

/// The answer a filter extracts from `text` (see [`AnswerFilter`]); `None` where nothing
/// matches (the fallback applies).
pub fn extract(filter: &Regex, group_select: i64, text: &str) -> Option<String> {
    let matches: Vec<regex::Captures<'_>> = filter.captures_iter(text).collect();
    let n = matches.len() as i64;
    let at = if group_select < 0 {
        n + group_select
    } else {
        group_select
    };
    let chosen = matches.get(usize::try_from(at).ok()?)?;
    let value = if chosen.len() > 1 {
        // Python's findall gives the groups; the first non-empty one is kept.
        (1..chosen.len())
            .filter_map(|g| chosen.get(g))
            .map(|m| m.as_str())
            .find(|m| !m.is_empty())?
    } else {
        chosen.get(0).map_or("", |m| m.as_str())
    };
    Some(value.trim().to_string())
}

/// lm-eval's `exact_match` options.
#[derive(Debug, Clone)]
pub struct ExactMatch {
    ignore: Vec<Regex>,
    ignore_case: bool,
    ignore_punctuation: bool,
}

impl ExactMatch {
    /// The task's options (its patterns were checked when the declarations were parsed).
    pub fn of(spec: &TaskSpec) -> Result<Self, String> {
        let ignore = spec
            .regexes_to_ignore
            .iter()
            .map(|r| Regex::new(r).map_err(|e| format!("regexes_to_ignore {r:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExactMatch {
            ignore,
            ignore_case: spec.ignore_case,
            ignore_punctuation: spec.ignore_punctuation,
        })
    }

    fn normalise(&self, text: &str) -> String {
        let mut text = text.to_string();
        for r in &self.ignore {
            text = r.replace_all(&text, "").into_owned();
        }
        if self.ignore_case {
            text = text.to_lowercase();
        }
        if self.ignore_punctuation {
            text.retain(|c| !c.is_ascii_punctuation());
        }
        text
    }

    /// Whether `answer` matches the sample's reference or any answer it also accepts (lm-eval
    /// scores a list of targets as right when any one matches).
    pub fn matches_any(&self, answer: &str, sample: &GenerationSample) -> bool {
        let answer = self.normalise(answer);
        std::iter::once(&sample.reference)
            .chain(&sample.also_accepted)
            .any(|r| self.normalise(r) == answer)
    }
}

/// The answer a filter extracts from a generation, normalised as the task says; `None` where
/// the filter finds nothing.
pub fn extract_answer(
    spec: &TaskSpec,
    filter: &AnswerFilter,
    regex: &Regex,
    text: &str,
) -> Option<String> {
    let answer = if filter.name == "none" {
        Some(text.to_string())
    } else if filter.append.is_empty() {
        extract(regex, filter.group_select, text)
    } else {
        extract(
            regex,
            filter.group_select,
            &format!("{text}{}", filter.append),
        )
    }?;
    Some(match spec.answer_normalization {
        AnswerNormalization::None => answer,
        AnswerNormalization::MinervaMath => normalize_final_answer(&answer),
    })
}

/// Generates every item not yet in `run` (resuming), one sample per item, and returns the
/// final metrics; `prompts[i]` is item `i`'s prompt, tokenized.
pub fn run_generation(
    model: &mut dyn LanguageModel,
    spec: &TaskSpec,
    items: &[Item],
    prompts: &[Vec<TokenId>],
    run: &mut RunHandle,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<RunMetrics, TaskError> {
    // Code is only generated where it can be run safely: refused before anything runs.
    let sandbox = match spec.program {
        Some(_) => Some(
            PythonSandbox::find(SandboxLimits::default()).map_err(|what| TaskError::Execution {
                task: spec.name.clone(),
                what,
            })?,
        ),
        None => None,
    };
    let mut work = GenerationWork {
        model,
        spec,
        items,
        prompts,
        sandbox,
        resumed: false,
    };
    drive(&mut work, run, on_progress)
}

struct GenerationWork<'a> {
    model: &'a mut dyn LanguageModel,
    spec: &'a TaskSpec,
    items: &'a [Item],
    prompts: &'a [Vec<TokenId>],
    sandbox: Option<PythonSandbox>,
    resumed: bool,
}

/// Items per generation call, per sequence the engine decodes at once: enough to keep its
/// slots full as sequences finish at different lengths, few enough that an interruption
/// loses little.
const ITEMS_PER_SLOT: usize = 4;

impl Resumable for GenerationWork<'_> {
    type Error = TaskError;

    fn n_units(&self) -> usize {
        self.items.len()
    }

    fn unit_of(&self, sample: &Sample, run: &RunHandle) -> Result<usize, TaskError> {
        match sample {
            Sample::Generation(g) if g.index < self.items.len() => Ok(g.index),
            _ => Err(foreign_sample(
                run,
                self.spec,
                self.items.len(),
                "generations",
            )),
        }
    }

    fn resuming(&mut self, finished: &[Sample], _run: &RunHandle) -> Result<(), TaskError> {
        self.resumed = !finished.is_empty();
        Ok(())
    }

    fn compute(&mut self, unit: usize) -> Result<Vec<Sample>, TaskError> {
        Ok(self.compute_group(&[unit])?.into_iter().flatten().collect())
    }

    fn group_len(&self, pending: &[usize]) -> usize {
        (self.model.parallel_sequences() * ITEMS_PER_SLOT)
            .max(1)
            .min(pending.len())
    }

    fn compute_group(&mut self, units: &[usize]) -> Result<Vec<Vec<Sample>>, TaskError> {
        let prompts: Vec<&[TokenId]> = units.iter().map(|&u| self.prompts[u].as_slice()).collect();
        let generations = generate_until(
            &mut *self.model,
            &prompts,
            &self.spec.until,
            self.spec.generation_budget(),
        )?;
        Ok(units
            .iter()
            .zip(generations)
            .map(|(&unit, g)| {
                let item = &self.items[unit];
                let execution = match (&self.sandbox, &item.program) {
                    (Some(sandbox), Some((before, after))) => {
                        Some(sandbox.run(&format!("{before}{}{after}", g.text)))
                    }
                    _ => None,
                };
                vec![Sample::Generation(GenerationSample {
                    index: item.index,
                    text: g.text,
                    n_tokens: g.tokens.len(),
                    n_prompt_tokens: self.prompts[unit].len(),
                    stop: g.stop,
                    reference: item
                        .choice_texts
                        .get(item.gold)
                        .cloned()
                        .unwrap_or_default(),
                    also_accepted: item
                        .choice_texts
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| i != item.gold)
                        .map(|(_, c)| c.clone())
                        .collect(),
                    execution,
                })]
            })
            .collect())
    }

    fn metrics(&self, samples: &[Sample], status: RunStatus, elapsed_s: f64) -> RunMetrics {
        let generations: Vec<GenerationSample> = samples
            .iter()
            .filter_map(|s| match s {
                Sample::Generation(g) => Some(g.clone()),
                _ => None,
            })
            .collect();
        let mut out = generation_metrics(self.spec, &generations, status, elapsed_s);
        let tokens: usize = generations.iter().map(|g| g.n_tokens).sum();
        if tokens > 0 && !self.resumed && elapsed_s > 0.0 {
            out.metrics.push(Metric {
                name: format!("{}/generated_tokens_per_s", self.spec.name),
                value: tokens as f64 / elapsed_s,
                stderr: None,
                unit: "tokens/s".into(),
                how: format!(
                    "{tokens} generated tokens over the run's {elapsed_s:.1} s, prompt processing, {} sequences at once, included",
                    self.model.parallel_sequences()
                ),
            });
        }
        out
    }
}

/// `pass@1` (greedy: the share of items whose one program passed its tests) ± stderr, and the
/// programs that were killed at the time limit, over the samples that were run.
fn execution_metrics(spec: &TaskSpec, samples: &[GenerationSample]) -> Vec<Metric> {
    let outcomes: Vec<&ExecutionOutcome> = samples
        .iter()
        .filter_map(|s| s.execution.as_ref())
        .collect();
    if outcomes.is_empty() {
        return Vec::new();
    }
    let passed: Vec<f64> = outcomes
        .iter()
        .map(|o| f64::from(u8::from(matches!(o, ExecutionOutcome::Passed))))
        .collect();
    let (value, stderr) = mean_and_stderr(&passed);
    let timed_out = outcomes
        .iter()
        .filter(|o| matches!(o, ExecutionOutcome::TimedOut { .. }))
        .count();
    let limits = SandboxLimits::default();
    vec![
        Metric {
            name: format!("{}/pass@1", spec.name),
            value,
            stderr,
            unit: "fraction".into(),
            how: format!(
                "fraction of items whose greedy completion, run with the item's tests in a bubblewrap sandbox (no network, read-only /usr only, {} s wall, {} CPU s, {} GiB address space), exits without error (pass@1 with one greedy sample per item)",
                limits.wall.as_secs(),
                limits.cpu_s,
                limits.memory_bytes >> 30
            ),
        },
        Metric {
            name: format!("{}/timed_out", spec.name),
            value: timed_out as f64,
            stderr: None,
            unit: "items".into(),
            how: "programs killed at the wall-clock limit (counted as failed)".into(),
        },
    ]
}

/// The filters a task reports: its own, or the whole text as `none`.
fn filters_of(spec: &TaskSpec) -> Vec<AnswerFilter> {
    if spec.filters.is_empty() {
        vec![AnswerFilter {
            name: "none".into(),
            regex: "(?s).*".into(),
            group_select: 0,
            fallback: String::new(),
            append: String::new(),
        }]
    } else {
        spec.filters.clone()
    }
}

/// A generative task's metrics over `samples`: `exact_match,<filter>` with its stderr and the
/// answers each filter could not extract (`invalid,<filter>`), why generations ended, and
/// their mean length.
pub fn generation_metrics(
    spec: &TaskSpec,
    samples: &[GenerationSample],
    status: RunStatus,
    elapsed_s: f64,
) -> RunMetrics {
    let name = |m: &str| format!("{}/{m}", spec.name);
    let n = samples.len();
    let mut out = vec![Metric {
        name: name("items"),
        value: n as f64,
        stderr: None,
        unit: "items".into(),
        how: format!("{n} items of {} ({}) generated", spec.name, spec.split),
    }];
    let finish = |metrics| RunMetrics {
        schema_version: SCHEMA_VERSION,
        status,
        elapsed_s,
        metrics,
    };
    if samples.is_empty() {
        return finish(out);
    }
    out.extend(execution_metrics(spec, samples));
    let matcher = match ExactMatch::of(spec) {
        Ok(m) => m,
        Err(_) => return finish(out),
    };
    let filters = if spec.metrics.iter().any(|m| m == "exact_match") {
        filters_of(spec)
    } else {
        Vec::new()
    };
    for filter in filters {
        let Ok(regex) = Regex::new(&filter.regex) else {
            continue;
        };
        let extracted: Vec<Option<String>> = samples
            .iter()
            .map(|s| extract_answer(spec, &filter, &regex, &s.text))
            .collect();
        let hits: Vec<f64> = extracted
            .iter()
            .zip(samples)
            .map(|(answer, s)| {
                f64::from(u8::from(
                    answer.as_deref().is_some_and(|a| matcher.matches_any(a, s)),
                ))
            })
            .collect();
        let (value, stderr) = mean_and_stderr(&hits);
        out.push(Metric {
            name: name(&format!("exact_match,{}", filter.name)),
            value,
            stderr,
            unit: "fraction".into(),
            how: format!(
                "fraction of items whose answer extracted by `{}` (regex {:?}{}, match {}){} equals {} after removing {:?}{}{} (lm-eval exact_match{})",
                filter.name,
                filter.regex,
                if filter.append.is_empty() { String::new() } else { format!(" on the text + {:?}", filter.append) },
                filter.group_select,
                match spec.answer_normalization {
                    AnswerNormalization::None => "",
                    AnswerNormalization::MinervaMath => " and normalised as Minerva's normalize_final_answer",
                },
                if samples.iter().any(|s| !s.also_accepted.is_empty()) { "the reference or any other accepted answer" } else { "the reference" },
                spec.regexes_to_ignore,
                if spec.ignore_case { ", case ignored" } else { "" },
                if spec.ignore_punctuation { ", punctuation ignored" } else { "" },
                match spec.answer_normalization {
                    AnswerNormalization::None => "",
                    AnswerNormalization::MinervaMath => "; string equality only: lm-eval's minerva_math also accepts answers sympy proves equal",
                },
            ),
        });
        let invalid = extracted.iter().filter(|a| a.is_none()).count();
        out.push(Metric {
            name: name(&format!("invalid,{}", filter.name)),
            value: invalid as f64,
            stderr: None,
            unit: "items".into(),
            how: format!(
                "items where `{}` found no answer (scored wrong, answer {:?})",
                filter.name, filter.fallback
            ),
        });
    }
    let share = |pick: &dyn Fn(&StopReason) -> bool| {
        samples.iter().filter(|s| pick(&s.stop)).count() as f64 / n as f64
    };
    out.push(Metric {
        name: name("stopped_by_budget"),
        value: share(&|s| *s == StopReason::TokenBudget),
        stderr: None,
        unit: "fraction".into(),
        how: format!(
            "fraction of items whose generation used the whole budget of {} tokens without a stop sequence",
            spec.generation_budget()
        ),
    });
    out.push(Metric {
        name: name("stopped_by_eos"),
        value: share(&|s| *s == StopReason::EndOfGeneration),
        stderr: None,
        unit: "fraction".into(),
        how: "fraction of items ended by an end-of-generation token".into(),
    });
    let lengths: Vec<f64> = samples.iter().map(|s| s.n_tokens as f64).collect();
    let (mean_len, se_len) = mean_and_stderr(&lengths);
    out.push(Metric {
        name: name("generated_tokens"),
        value: mean_len,
        stderr: se_len,
        unit: "tokens".into(),
        how: "mean tokens generated per item (the stopping token included)".into(),
    });
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmdensity_backend::{BackendError, LogitsVisitor, ModelInfo, ScoreRequest, TokenScore};

    /// Generates a fixed text, one byte per token (token = byte + 1), then `eos` (id 0) where
    /// asked; prompts are ignored.
    struct Scripted {
        info: ModelInfo,
        script: Vec<u8>,
        then_eos: bool,
    }

    impl Scripted {
        fn new(script: &str, then_eos: bool) -> Self {
            Scripted {
                info: ModelInfo {
                    architecture: "scripted".into(),
                    n_vocab: 257,
                    n_ctx_train: 4096,
                    n_params: 0,
                    bos: None,
                    eos: Some(0),
                    add_bos: false,
                },
                script: script.as_bytes().to_vec(),
                then_eos,
            }
        }
    }

    impl LanguageModel for Scripted {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn max_sequence_len(&self) -> usize {
            4096
        }
        fn tokenize(&self, text: &str, _: bool) -> Result<Vec<TokenId>, BackendError> {
            Ok(text.bytes().map(|b| TokenId::from(b) + 1).collect())
        }
        fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, BackendError> {
            Ok(u8::try_from(token - 1).map(|b| vec![b]).unwrap_or_default())
        }
        fn generate_greedy(
            &mut self,
            requests: &[GenerateRequest],
            on_token: &mut lmdensity_backend::TokenWatcher<'_>,
        ) -> Result<Vec<Vec<TokenId>>, BackendError> {
            let mut script: Vec<TokenId> =
                self.script.iter().map(|&b| TokenId::from(b) + 1).collect();
            if self.then_eos {
                script.push(0);
            }
            Ok(requests
                .iter()
                .enumerate()
                .map(|(request, r)| {
                    let mut out = Vec::new();
                    for &token in script.iter().take(r.max_new_tokens) {
                        out.push(token);
                        let bytes = self.token_bytes(token).unwrap_or_default();
                        let seen = GeneratedToken {
                            request,
                            token,
                            bytes: &bytes,
                            end_of_generation: token == 0,
                        };
                        if !on_token(&seen) {
                            break;
                        }
                    }
                    out
                })
                .collect())
        }
        fn score_visiting(
            &mut self,
            _: &[ScoreRequest],
            _: Option<&mut LogitsVisitor<'_>>,
        ) -> Result<Vec<Vec<TokenScore>>, BackendError> {
            Ok(Vec::new())
        }
    }

    fn gsm8k() -> TaskSpec {
        crate::TaskSet::builtin()
            .tasks
            .into_iter()
            .find(|t| t.name == "gsm8k")
            .expect("gsm8k declared")
    }

    #[test]
    fn stop_sequences_cut_the_text_and_are_the_stop_reason() {
        let until = vec!["Question:".to_string(), "\n\n".to_string()];
        let mut model = Scripted::new(" 3 + 4 = 7. So the answer is 7.\n\nQuestion: more", false);
        let g = generate_until(&mut model, &[&[1]], &until, 100).expect("generates");
        assert_eq!(g[0].text, " 3 + 4 = 7. So the answer is 7.");
        assert_eq!(
            g[0].stop,
            StopReason::StopSequence {
                sequence: "\n\n".into()
            }
        );
        // Generation stopped at the second newline: nothing after it was generated.
        assert_eq!(
            g[0].tokens.len(),
            " 3 + 4 = 7. So the answer is 7.\n\n".len()
        );
    }

    #[test]
    fn the_budget_and_end_of_generation_are_stop_reasons_not_errors() {
        let mut model = Scripted::new("forever and ever and ever", false);
        let g = generate_until(&mut model, &[&[1], &[2]], &[], 7).expect("generates");
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].text, "forever");
        assert_eq!(g[1].stop, StopReason::TokenBudget);
        assert_eq!(g[1].tokens.len(), 7);
        let mut model = Scripted::new("done", true);
        let g = generate_until(&mut model, &[&[1]], &["\n\n".into()], 50).expect("generates");
        assert_eq!(g[0].text, "done");
        assert_eq!(g[0].stop, StopReason::EndOfGeneration);
    }

    #[test]
    fn gsm8k_filters_follow_lm_eval_and_unparsable_answers_are_counted_wrong() {
        let spec = gsm8k();
        let sample = |text: &str, reference: &str| GenerationSample {
            index: 0,
            text: text.into(),
            n_tokens: 10,
            n_prompt_tokens: 100,
            stop: StopReason::StopSequence {
                sequence: "\n\n".into(),
            },
            reference: reference.into(),
            also_accepted: Vec::new(),
            execution: None,
        };
        let samples = [
            // Both filters find 1,200 → "1200" after the ignored commas.
            sample(" She pays 1,200 dollars. So the answer is 1,200.", "1200"),
            // Strict finds 8 (wrong), flexible takes the last number, $18 → 18.
            sample(" The answer is 8 apples, which cost $18", "18"),
            // No number at all: invalid under both filters, wrong, counted.
            sample(" I do not know.", "5"),
            // Budget exhausted mid-thought: flexible picks the last number.
            sample(" 2 + 2 = 4 and 4 + 1 = 5", "5"),
        ];
        let m = generation_metrics(&spec, &samples, RunStatus::Complete, 1.0);
        let get = |n: &str| {
            m.metrics
                .iter()
                .find(|x| x.name == format!("gsm8k/{n}"))
                .map(|x| x.value)
                .unwrap_or_else(|| panic!("{n} missing: {:?}", m.metrics))
        };
        assert_eq!(get("exact_match,strict-match"), 0.25);
        assert_eq!(get("exact_match,flexible-extract"), 0.75);
        assert_eq!(get("invalid,strict-match"), 2.0);
        assert_eq!(get("invalid,flexible-extract"), 1.0);
        assert_eq!(get("items"), 4.0);
    }

    fn builtin(name: &str) -> TaskSpec {
        crate::TaskSet::builtin()
            .tasks
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} declared"))
    }

    fn metric(m: &RunMetrics, name: &str) -> f64 {
        m.metrics
            .iter()
            .find(|x| x.name == name)
            .map(|x| x.value)
            .unwrap_or_else(|| panic!("{name} missing: {:?}", m.metrics))
    }

    fn generated(text: &str, reference: &str, also: &[&str]) -> GenerationSample {
        GenerationSample {
            index: 0,
            text: text.into(),
            n_tokens: 10,
            n_prompt_tokens: 100,
            stop: StopReason::EndOfGeneration,
            reference: reference.into(),
            also_accepted: also.iter().map(|a| a.to_string()).collect(),
            execution: None,
        }
    }

    #[test]
    fn minerva_answers_are_read_from_the_final_answer_line_and_normalised() {
        let spec = builtin("minerva_math_500");
        let samples = [
            // The answer line cut (budget) before "I hope it is correct.", which is appended.
            generated(
                " So $x=\\boxed{\\frac12}$.\nFinal Answer: The final answer is $\\frac12$. ",
                "\\frac{1}{2}",
                &[],
            ),
            // Units and dollar signs removed, thousands separator dropped.
            generated(
                " ...\nFinal Answer: The final answer is $1,000$ dollars. I hope it is correct.",
                "1000",
                &[],
            ),
            // Right number in a box but no answer line: lm-eval's extraction finds nothing.
            generated(" The answer is $\\boxed{7}$.", "7", &[]),
            // A wrong answer.
            generated(
                " Final Answer: The final answer is $3$. I hope it is correct.",
                "4",
                &[],
            ),
        ];
        let m = generation_metrics(&spec, &samples, RunStatus::Complete, 1.0);
        assert_eq!(metric(&m, "minerva_math_500/exact_match,minerva"), 0.5);
        assert_eq!(metric(&m, "minerva_math_500/invalid,minerva"), 1.0);
    }

    #[test]
    fn short_answers_match_any_accepted_answer_without_case_punctuation_or_articles() {
        let spec = builtin("nq_open");
        let samples = [
            generated(" The Beatles", "Beatles", &[]),
            generated(" paris", "Lutetia", &["Paris", "City of Light"]),
            generated(" Justin Timberlake!", "justin timberlake", &[]),
            generated(" London", "Paris", &["City of Light"]),
            // Nothing generated before the stop sequence: no answer, scored wrong.
            generated("", "Paris", &[]),
        ];
        let m = generation_metrics(&spec, &samples, RunStatus::Complete, 1.0);
        assert_eq!(metric(&m, "nq_open/exact_match,remove_whitespace"), 0.6);
        assert_eq!(metric(&m, "nq_open/invalid,remove_whitespace"), 1.0);
        let spec = builtin("triviaqa");
        let m = generation_metrics(&spec, &samples[1..2], RunStatus::Complete, 1.0);
        assert_eq!(metric(&m, "triviaqa/exact_match,remove_whitespace"), 1.0);
    }

    #[test]
    fn extraction_takes_the_selected_match_and_the_first_non_empty_group() {
        let flexible = Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("regex");
        assert_eq!(
            extract(&flexible, -1, "3 then 45 then 7").as_deref(),
            Some("7")
        );
        assert_eq!(extract(&flexible, 0, "3 then 45").as_deref(), Some("3"));
        assert_eq!(extract(&flexible, -1, "none here"), None);
        let whole = Regex::new(r"answer").expect("regex");
        assert_eq!(extract(&whole, 0, "the answer").as_deref(), Some("answer"));
    }
}
