//! Chat templates: the Jinja template a model ships with, rendered with minijinja the way
//! `transformers`' `apply_chat_template` renders it.

use std::path::{Path, PathBuf};

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value, context};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::runtime::ChatMessage;

/// ChatML, used when a model ships no template (base models): a plain, widely understood
/// turn format.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: PathBuf,
    bos_token: String,
    eos_token: String,
}

#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'a str,
    content: &'a str,
}

impl ChatTemplate {
    /// Compiles `template`; `source` names where it came from in errors.
    pub fn new(template: &str, source: &Path, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, _> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| format_today(&format));
        env.add_template_owned("chat", template.to_owned())
            .map_err(|e| template_error(&e, source))?;
        Ok(Self {
            env,
            source: source.to_path_buf(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The template's text, to write into exported models.
    pub fn source_text(&self) -> Option<String> {
        self.env
            .get_template("chat")
            .ok()
            .map(|t| t.source().to_owned())
    }

    /// The BOS and EOS token texts the template was given.
    pub fn special_tokens(&self) -> (&str, &str) {
        (&self.bos_token, &self.eos_token)
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| template_error(&e, &self.source))?;
        let messages: Vec<TemplateMessage<'_>> = messages
            .iter()
            .map(|m| TemplateMessage {
                role: &m.role,
                content: &m.content,
            })
            .collect();
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| template_error(&e, &self.source))
    }
}

fn template_error(error: &JinjaError, source: &Path) -> Error {
    let mut message = error.to_string();
    if let Some(line) = error.line() {
        message = format!("{message} (template line {line})");
    }
    Error::ChatTemplate {
        message,
        path: source.to_path_buf(),
    }
}

/// `strftime_now` for templates that print today's date (Llama 3.1); only the common
/// directives, from the system clock in UTC.
fn format_today(format: &str) -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (year, month, day) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month_name = MONTHS[(month - 1) as usize];
    format
        .replace("%d", &format!("{day:02}"))
        .replace("%m", &format!("{month:02}"))
        .replace("%Y", &year.to_string())
        .replace("%B", month_name)
        .replace("%b", &month_name[..3])
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML_TEMPLATE, Path::new("builtin"), "", "").expect("compile");
        let text = t
            .render(&[ChatMessage::new("user", "Hi")], true)
            .expect("render");
        assert_eq!(
            text,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let text = t
            .render(&[ChatMessage::new("user", "Hi")], false)
            .expect("render");
        assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let source = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('user first') }}{% endif %}{{ messages[0]['content'].strip() }}";
        let t = ChatTemplate::new(source, Path::new("t.jinja"), "", "").expect("compile");
        let ok = t
            .render(&[ChatMessage::new("user", "  x  ")], true)
            .expect("render");
        assert_eq!(ok, "x");
        let err = t
            .render(&[ChatMessage::new("assistant", "x")], true)
            .expect_err("raises");
        let message = err.to_string();
        assert!(message.contains("user first"), "{message}");
        assert!(message.ends_with("t.jinja"), "{message}");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = ChatTemplate::new("line one\n{% if %}", Path::new("bad.jinja"), "", "")
            .err()
            .expect("fails");
        let message = err.to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
    }
}
