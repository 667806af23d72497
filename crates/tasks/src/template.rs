//! Prompt templates: Jinja, as lm-evaluation-harness's task YAMLs write them.
//!
//! Templates are rendered by [minijinja] with Python-compatible string methods
//! (`.strip()`, `.lstrip()`, `.split()` …, from `minijinja-contrib`), strict undefined fields
//! (a missing field is an error, never an empty string), `list.index(x)` and the two helpers
//! lm-eval writes in Python for its tasks: `hellaswag_preprocess` and `lower_first`.

use minijinja::value::{Serde, Value as JinjaValue};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::Value;

/// A rendering environment for task templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// The environment with the helpers task templates use.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // As lm-eval's Jinja environment: a template's final newline is kept.
        // (The default delimiters always build.)
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.set_unknown_method_callback(methods);
        env.add_filter("hellaswag_preprocess", |text: String| {
            hellaswag_preprocess(&text)
        });
        env.add_filter("lower_first", |text: String| lower_first(&text));
        Templates { env }
    }

    /// Renders `template` with the document's fields as variables.
    pub fn render(&self, template: &str, doc: &Value) -> Result<String, String> {
        self.env
            .render_str(template, JinjaValue::from(Serde(doc)))
            .map_err(|e| describe(template, &e))
    }

    /// Evaluates `expression` (with or without surrounding `{{ }}`) to a value.
    pub fn eval(&self, expression: &str, doc: &Value) -> Result<JinjaValue, String> {
        let expr = expression.trim();
        let expr = expr
            .strip_prefix("{{")
            .and_then(|e| e.strip_suffix("}}"))
            .unwrap_or(expr);
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(expression, &e))?;
        compiled
            .eval(JinjaValue::from(Serde(doc)))
            .map_err(|e| describe(expression, &e))
    }

    /// Evaluates `expression` to a list of strings (a task's choices).
    pub fn eval_list(&self, expression: &str, doc: &Value) -> Result<Vec<String>, String> {
        let value = self.eval(expression, doc)?;
        let items = value
            .try_iter()
            .map_err(|_| format!("choices {expression:?} is not a list: {value}"))?;
        items
            .map(|v| match v.as_str() {
                Some(s) => Ok(s.to_string()),
                None => Err(format!("a choice of {expression:?} is not text: {v}")),
            })
            .collect()
    }
}

fn describe(template: &str, e: &Error) -> String {
    let mut what = format!("template {template:?}: {}", e.kind());
    if let Some(detail) = e.detail() {
        what.push_str(": ");
        what.push_str(detail);
    }
    what
}

/// Python's string/dict methods (minijinja-contrib's pycompat), plus `list.index(x)`.
fn methods(
    state: &mut State,
    value: &JinjaValue,
    method: &str,
    args: &[JinjaValue],
) -> Result<JinjaValue, Error> {
    if method == "index" {
        if let (Ok(items), [wanted]) = (value.try_iter(), args) {
            return items
                .into_iter()
                .position(|v| &v == wanted)
                .map(JinjaValue::from)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("{wanted} is not in {value}"),
                    )
                });
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// lm-eval's HellaSwag cleaning: strip; ` [title]` becomes `. `; bracketed WikiHow artefacts
/// (`[…]` within a line, shortest match) are removed; double spaces become single (one pass).
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let line_end = after.find('\n').unwrap_or(after.len());
        match after[..line_end].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// The first character lower-cased, the rest unchanged (lm-eval's COPA `convert_choice`).
pub fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_methods_slices_and_strict_fields() {
        let t = Templates::new();
        let doc = json!({"support": "  Cells divide.", "question": "What divides?", "text": "a b c", "label": ["A", "B", "C"], "key": " B"});
        assert_eq!(
            t.render("{{support.lstrip()}}\nQuestion: {{question}}", &doc)
                .expect("renders"),
            "Cells divide.\nQuestion: What divides?"
        );
        assert_eq!(
            t.render(
                "{{text.split(' ')[:-1]|join(' ')}}|{{' '+text.split(' ')[-1]}}",
                &doc
            )
            .expect("renders"),
            "a b| c"
        );
        assert_eq!(
            t.eval("{{label.index(key.lstrip())}}", &doc)
                .expect("evaluates")
                .to_string(),
            "1"
        );
        let missing = t.render("{{nope}}", &doc).expect_err("strict");
        assert!(
            missing.contains("nope") || missing.contains("undefined"),
            "{missing}"
        );
        assert!(t.eval("label.index('Z')", &doc).is_err());
    }

    #[test]
    fn hellaswag_cleaning_matches_lm_eval() {
        assert_eq!(
            hellaswag_preprocess(" Roof shingle removal: A man is sitting on a roof. [header] How to  x [title] Step one."),
            "Roof shingle removal: A man is sitting on a roof. How to x. Step one."
        );
        assert_eq!(hellaswag_preprocess("a [b\n] c"), "a [b\n] c");
        assert_eq!(lower_first("He fell."), "he fell.");
    }
}
