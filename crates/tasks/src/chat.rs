//! Chat templates: a model's own Jinja template (GGUF `tokenizer.chat_template`, or
//! `tokenizer_config.json`'s) rendered with minijinja as Hugging Face's `apply_chat_template`
//! renders it, the way lm-evaluation-harness's `--apply_chat_template` builds prompts, with
//! few-shot examples in one user turn or as turns of their own (`--fewshot-as-multiturn`).

use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

use crate::items::Item;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Message {
    fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat template and the special-token texts templates refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts templates insert.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| format!("chat template syntax: {e}"))?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("the chat template does not compile: {e}"))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// The conversation rendered, ending with the assistant's turn opened when
    /// `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| format!("the chat template: {e}"))?;
        template
            .render(minijinja::context! {
                messages => minijinja::value::Value::from(minijinja::value::Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| {
                let mut text = format!("the chat template failed to render: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                text
            })
    }
}

/// The messages of an item's prompt, as lm-eval builds them under `--apply_chat_template`: an
/// optional system message, then the whole context (preamble, shots, question) as one user
/// message, or with `multiturn` each shot as a user turn and its answer as an assistant turn
/// before the question's user turn.
pub fn item_messages(item: &Item, system: Option<&str>, multiturn: bool) -> Vec<Message> {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(Message::new("system", system));
    }
    if multiturn {
        for (prompt, answer) in &item.shots {
            messages.push(Message::new("user", prompt.as_str()));
            messages.push(Message::new("assistant", answer.trim_start()));
        }
        messages.push(Message::new("user", item.question.as_str()));
    } else {
        let context = item.requests.first().map(|r| r.0.as_str()).unwrap_or("");
        messages.push(Message::new("user", context));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template (ChatML with a default system message), as its GGUF holds it.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn item() -> Item {
        Item {
            index: 0,
            requests: vec![(
                "Question: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer:".into(),
                " 4".into(),
            )],
            choice_texts: vec!["4".into()],
            gold: 0,
            program: None,
            shots: vec![("Question: 1+1?\nAnswer:".into(), " 2".into())],
            question: "Question: 2+2?\nAnswer:".into(),
        }
    }

    #[test]
    fn chatml_renders_one_turn_or_shots_as_turns() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").expect("compiles");
        let one = t
            .render(&item_messages(&item(), None, false), true)
            .expect("renders");
        assert_eq!(one, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nQuestion: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n");
        let turns = t
            .render(&item_messages(&item(), Some("Be brief."), true), true)
            .expect("renders");
        assert_eq!(turns, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQuestion: 1+1?\nAnswer:<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\nQuestion: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn templates_that_fail_say_why() {
        let strict = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'] | trim }}{% endfor %}";
        let t = ChatTemplate::new(strict, "<bos>", "<eos>").expect("compiles");
        let err = t
            .render(&item_messages(&item(), Some("sys"), false), true)
            .expect_err("raises");
        assert!(err.contains("System role not supported"), "{err}");
        assert_eq!(
            t.render(&item_messages(&item(), None, true), true)
                .expect("renders"),
            "<bos>Question: 1+1?\nAnswer:2Question: 2+2?\nAnswer:"
        );
        let broken = ChatTemplate::new("{% for m in messages %}", "", "").expect_err("unclosed");
        assert!(broken.contains("does not compile"), "{broken}");
    }
}
