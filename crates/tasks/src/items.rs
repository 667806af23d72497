//! From documents to scoring items, as lm-evaluation-harness builds its loglikelihood requests.

use serde_json::Value;

use crate::spec::{Choices, TaskKind, TaskSpec};
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
}

/// Substitutes `{{field}}` with the document's field (strings as they are, numbers and
/// booleans as JSON writes them).
pub fn render(template: &str, doc: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in template {template:?}"))?;
        let field = after[..end].trim();
        match doc.get(field) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            Some(other) => return Err(format!("field `{field}` is not text: {other}")),
            None => return Err(format!("no field `{field}`")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn choice_texts(spec: &TaskSpec, doc: &Value) -> Result<Vec<String>, String> {
    match &spec.choices {
        Choices::Templates(templates) => templates.iter().map(|t| render(t, doc)).collect(),
        Choices::Field(template) => {
            let field = template
                .trim()
                .strip_prefix("{{")
                .and_then(|t| t.strip_suffix("}}"))
                .map(str::trim)
                .ok_or_else(|| format!("choices {template:?} must be `{{{{field}}}}` or a list"))?;
            let list = doc[field]
                .as_array()
                .ok_or_else(|| format!("field `{field}` is not a list"))?;
            list.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("a choice in `{field}` is not text: {v}"))
                })
                .collect()
        }
    }
}

/// The items of `documents` under `spec`.
pub fn build_items(spec: &TaskSpec, documents: &[Value]) -> Result<Vec<Item>, TaskError> {
    documents
        .iter()
        .enumerate()
        .map(|(index, doc)| {
            build_item(spec, index, doc).map_err(|what| TaskError::Document {
                task: spec.name.clone(),
                index,
                what,
            })
        })
        .collect()
}

fn build_item(spec: &TaskSpec, index: usize, doc: &Value) -> Result<Item, String> {
    let choices = choice_texts(spec, doc)?;
    if choices.len() < 2 {
        return Err(format!(
            "{} choice(s); a multiple-choice item needs two or more",
            choices.len()
        ));
    }
    let gold_text = render(&spec.gold, doc)?;
    // A boolean gold (BoolQ's `answer`) indexes ["no", "yes"].
    let gold: usize = match gold_text.trim() {
        "false" => 0,
        "true" => 1,
        other => other
            .parse()
            .map_err(|_| format!("gold {gold_text:?} is not a choice index"))?,
    };
    let (requests, gold) = match spec.kind {
        TaskKind::MultipleChoice => {
            let context = render(&spec.text, doc)?;
            let requests = choices
                .iter()
                .map(|c| (context.clone(), format!("{}{c}", spec.target_delimiter)))
                .collect();
            (requests, gold)
        }
        TaskKind::Winogrande => {
            let sentence = render(&spec.text, doc)?;
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
        return Err(format!("gold {gold} but only {} choices", choices.len()));
    }
    Ok(Item {
        index,
        requests,
        choice_texts: choices,
        gold,
    })
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
        let items = build_items(&task("piqa"), &[doc]).expect("builds");
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
        let item = &build_items(&task("boolq"), &[doc]).expect("builds")[0];
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
        let item = &build_items(&task("winogrande"), &[doc]).expect("builds")[0];
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
        let err = build_items(&task("piqa"), &docs)
            .expect_err("missing sol2")
            .to_string();
        assert!(
            err.contains("piqa") && err.contains("document 1") && err.contains("sol2"),
            "{err}"
        );
        let bad_gold = [json!({"goal": "x", "sol1": "a", "sol2": "b", "label": 5})];
        assert!(build_items(&task("piqa"), &bad_gold).is_err());
    }
}
