//! From documents to scoring items, as lm-evaluation-harness builds its loglikelihood requests.

use serde_json::Value;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::spec::{Choices, FewshotSampler, TaskKind, TaskSpec};
use crate::template::Templates;
use crate::TaskError;

/// One task item: a (context, continuation) pair per choice and the gold choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Document number, from 0.
    pub index: usize,
    /// (context, continuation) per choice; the continuation is what gets scored.
    pub requests: Vec<(String, String)>,
    /// The choice texts (their character counts are lm-eval's acc_norm lengths).
    pub choice_texts: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
    /// The few-shot examples inside every context, as (prompt, answer) pairs, the preamble in
    /// the first prompt (for chat templates that put shots in turns of their own).
    pub shots: Vec<(String, String)>,
    /// The context of the item itself, without preamble or shots.
    pub question: String,
    /// Code tasks: the test program's text before and after the completion.
    pub program: Option<(String, String)>,
}

/// Few-shot examples to put before each context.
#[derive(Debug, Clone, Copy)]
pub struct Fewshot<'a> {
    /// Examples per item.
    pub k: usize,
    /// Seed of the random sampler (each item draws from its own stream of this seed).
    pub seed: u64,
    /// The documents shots are drawn from.
    pub pool: &'a [Value],
    /// Whether `pool` is the evaluated split itself (an item is never its own shot).
    pub same_split: bool,
}

/// The choice texts of a document.
fn choice_texts(
    spec: &TaskSpec,
    templates: &Templates,
    doc: &Value,
) -> Result<Vec<String>, String> {
    match &spec.choices {
        Choices::Templates(list) => list.iter().map(|t| templates.render(t, doc)).collect(),
        Choices::Expression(expr) => templates.eval_list(expr, doc),
    }
}

/// A document's item without preamble or shots (index 0).
fn document_item(spec: &TaskSpec, templates: &Templates, doc: &Value) -> Result<Item, String> {
    let choices = choice_texts(spec, templates, doc)?;
    let min_choices = match spec.kind {
        TaskKind::Loglikelihood | TaskKind::GenerateUntil => 1,
        TaskKind::MultipleChoice | TaskKind::Winogrande => 2,
    };
    if choices.len() < min_choices {
        return Err(format!(
            "{} choice(s); a {:?} item needs {min_choices} or more",
            choices.len(),
            spec.kind
        ));
    }
    let gold_text = templates.render(&spec.gold, doc)?;
    // A boolean gold (BoolQ's `answer`) indexes ["no", "yes"].
    let gold: usize = match gold_text.trim() {
        "false" | "False" => 0,
        "true" | "True" => 1,
        other => other
            .parse()
            .map_err(|_| format!("gold {gold_text:?} is not a choice index"))?,
    };
    let (requests, gold) = match spec.kind {
        TaskKind::MultipleChoice | TaskKind::Loglikelihood | TaskKind::GenerateUntil => {
            let context = templates.render(&spec.text, doc)?;
            let requests = choices
                .iter()
                .map(|c| (context.clone(), format!("{}{c}", spec.target_delimiter)))
                .collect();
            (requests, gold)
        }
        TaskKind::Winogrande => {
            let sentence = templates.render(&spec.text, doc)?;
            let blank = sentence
                .find('_')
                .ok_or_else(|| format!("sentence {sentence:?} has no blank `_`"))?;
            let target = sentence[blank + 1..].trim();
            let requests = choices
                .iter()
                .map(|option| {
                    (
                        format!("{}{option}", &sentence[..blank]),
                        format!("{}{target}", spec.target_delimiter),
                    )
                })
                .collect();
            // The answer field is 1-based ("1" or "2").
            let gold = gold
                .checked_sub(1)
                .ok_or_else(|| format!("answer {gold_text:?} is not 1 or 2"))?;
            (requests, gold)
        }
    };
    if gold >= choices.len() {
        return Err(format!("gold {gold} but only {} choice(s)", choices.len()));
    }
    let requests: Vec<(String, String)> = requests;
    let question = requests.first().map(|r| r.0.clone()).unwrap_or_default();
    let program = match &spec.program {
        Some(template) => Some(program_around_completion(templates, template, doc)?),
        None => None,
    };
    Ok(Item {
        index: 0,
        requests,
        choice_texts: choices,
        gold,
        shots: Vec::new(),
        question,
        program,
    })
}

/// The test program rendered with a marker for `{{completion}}`, split at the marker.
fn program_around_completion(
    templates: &Templates,
    template: &str,
    doc: &Value,
) -> Result<(String, String), String> {
    const MARKER: &str = "\u{0}lmdensity-completion\u{0}";
    let mut with_completion = doc.clone();
    match &mut with_completion {
        Value::Object(fields) => {
            fields.insert("completion".into(), Value::String(MARKER.into()));
        }
        _ => return Err("a code task's document must be an object".into()),
    }
    let program = templates.render(template, &with_completion)?;
    match program.split_once(MARKER) {
        Some((before, after)) if !after.contains(MARKER) => {
            Ok((before.to_string(), after.to_string()))
        }
        _ => Err(format!(
            "the program template {template:?} must use {{{{completion}}}} exactly once"
        )),
    }
}

/// The shots a context already holds (`context_shots`), split back into (prompt, answer)
/// pairs, and the question after them.
fn split_context_shots(
    context: &str,
    spec: &TaskSpec,
    shots: &crate::spec::ContextShots,
) -> Result<(Vec<(String, String)>, String), String> {
    let segments: Vec<&str> = context.split(spec.fewshot_delimiter.as_str()).collect();
    if segments.len() != shots.count + 1 {
        return Err(format!(
            "the context splits at {:?} into {} parts; {} shots and the question were expected",
            spec.fewshot_delimiter,
            segments.len(),
            shots.count
        ));
    }
    let mut pairs = Vec::with_capacity(shots.count);
    for (i, segment) in segments[..shots.count].iter().enumerate() {
        let at = segment
            .find(&shots.answer_marker)
            .ok_or_else(|| format!("shot {i} has no answer marker {:?}", shots.answer_marker))?
            + shots.answer_marker.len();
        pairs.push((segment[..at].to_string(), segment[at..].to_string()));
    }
    Ok((pairs, segments[shots.count].to_string()))
}

/// The documents used as shots for item `index`.
fn shots_for<'a>(spec: &TaskSpec, fewshot: &Fewshot<'a>, index: usize) -> Vec<&'a Value> {
    let sampler = spec.fewshot.as_ref().map(|f| f.sampler).unwrap_or_default();
    let candidates: Vec<usize> = (0..fewshot.pool.len())
        .filter(|&i| !(fewshot.same_split && i == index))
        .collect();
    let chosen: Vec<usize> = match sampler {
        FewshotSampler::FirstN => candidates.into_iter().take(fewshot.k).collect(),
        FewshotSampler::Random => {
            let mut rng = ChaCha8Rng::seed_from_u64(fewshot.seed);
            rng.set_stream(index as u64);
            let k = fewshot.k.min(candidates.len());
            rand::seq::index::sample(&mut rng, candidates.len(), k)
                .into_iter()
                .map(|i| candidates[i])
                .collect()
        }
    };
    chosen.into_iter().map(|i| &fewshot.pool[i]).collect()
}

/// The items of `documents` under `spec`, with `fewshot` examples (lm-eval's layout: preamble,
/// then per shot its context, its gold continuation and the few-shot delimiter, then the
/// document's context).
pub fn build_items(
    spec: &TaskSpec,
    documents: &[Value],
    fewshot: Option<&Fewshot<'_>>,
) -> Result<Vec<Item>, TaskError> {
    let templates = Templates::new();
    let doc_error = |index: usize| {
        move |what: String| TaskError::Document {
            task: spec.name.clone(),
            index,
            what,
        }
    };
    if let Some(f) = fewshot {
        let available = f.pool.len().saturating_sub(usize::from(f.same_split));
        if f.k > available {
            return Err(TaskError::Document {
                task: spec.name.clone(),
                index: 0,
                what: format!(
                    "{} shots asked for, the few-shot split has {available}",
                    f.k
                ),
            });
        }
    }
    let preamble = spec.preamble.as_deref();
    documents
        .iter()
        .enumerate()
        .map(|(index, doc)| {
            let mut prefix = match preamble {
                Some(p) => templates.render(p, doc).map_err(doc_error(index))?,
                None => String::new(),
            };
            let mut shots = Vec::new();
            if let Some(f) = fewshot.filter(|f| f.k > 0) {
                for shot in shots_for(spec, f, index) {
                    let example = document_item(spec, &templates, shot)
                        .map_err(|what| doc_error(index)(format!("a few-shot example: {what}")))?;
                    let (context, continuation) = &example.requests[example.gold];
                    let prompt = if shots.is_empty() {
                        format!("{prefix}{context}")
                    } else {
                        context.clone()
                    };
                    shots.push((prompt, continuation.clone()));
                    prefix.push_str(context);
                    prefix.push_str(continuation);
                    prefix.push_str(&spec.fewshot_delimiter);
                }
            }
            let mut item = document_item(spec, &templates, doc).map_err(doc_error(index))?;
            item.index = index;
            if shots.is_empty() && !prefix.is_empty() {
                // A preamble without shots belongs to the question.
                item.question = format!("{prefix}{}", item.question);
            }
            item.shots = shots;
            if let Some(held) = &spec.context_shots {
                let (pairs, question) =
                    split_context_shots(&item.question, spec, held).map_err(doc_error(index))?;
                item.shots.extend(pairs);
                item.question = question;
            }
            if !prefix.is_empty() {
                for (context, _) in &mut item.requests {
                    context.insert_str(0, &prefix);
                }
            }
            Ok(item)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSet;
    use serde_json::json;

    fn task(name: &str) -> TaskSpec {
        TaskSet::builtin()
            .tasks
            .into_iter()
            .find(|t| t.name == name)
            .expect("declared")
    }

    #[test]
    fn piqa_builds_lm_eval_requests() {
        let doc = json!({"goal": "How do I open a jar?", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0});
        let items = build_items(&task("piqa"), &[doc], None).expect("builds");
        assert_eq!(
            items[0].requests[1],
            (
                "Question: How do I open a jar?\nAnswer:".to_string(),
                " Eat the lid.".to_string()
            )
        );
        assert_eq!(items[0].gold, 0);
    }

    #[test]
    fn boolq_uses_the_superglue_prompt_and_a_boolean_gold() {
        let doc = json!({"passage": "Ethanol fuel -- ethanol burns.", "question": "does ethanol burn", "answer": true});
        let item = &build_items(&task("boolq"), &[doc], None).expect("builds")[0];
        assert_eq!(
            item.requests[1],
            (
                "Ethanol fuel -- ethanol burns.\nQuestion: does ethanol burn?\nAnswer:".to_string(),
                " yes".to_string()
            )
        );
        assert_eq!(item.gold, 1);
    }

    #[test]
    fn winogrande_varies_the_context_and_scores_the_suffix() {
        let doc = json!({"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.", "option1": "Sarah", "option2": "Maria", "answer": "2"});
        let item = &build_items(&task("winogrande"), &[doc], None).expect("builds")[0];
        assert_eq!(
            item.requests[0].0,
            "Sarah was a much better surgeon than Maria so Sarah"
        );
        assert_eq!(
            item.requests[1].0,
            "Sarah was a much better surgeon than Maria so Maria"
        );
        assert_eq!(item.requests[0].1, " always got the harder cases.");
        assert_eq!(item.gold, 1);
    }

    #[test]
    fn malformed_documents_name_the_task_the_document_and_the_field() {
        let docs = [
            json!({"goal": "x", "sol1": "a", "sol2": "b", "label": 0}),
            json!({"goal": "x", "sol1": "a", "label": 0}),
        ];
        let err = build_items(&task("piqa"), &docs, None)
            .expect_err("missing sol2")
            .to_string();
        assert!(
            err.contains("piqa") && err.contains("document 1") && err.contains("sol2"),
            "{err}"
        );
        let bad_gold = [json!({"goal": "x", "sol1": "a", "sol2": "b", "label": 5})];
        assert!(build_items(&task("piqa"), &bad_gold, None).is_err());
    }
}
