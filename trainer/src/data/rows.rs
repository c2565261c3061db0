//! One row (a JSON object, or a table row seen as one) → a conversation, for each row format.
//! Errors are plain sentences; the reader adds the line number.

use serde_json::{Map, Value};

use super::RowFormat;
use crate::runtime::ChatMessage;

/// A row's conversation and provenance fields.
pub(crate) struct Row {
    pub messages: Vec<ChatMessage>,
    pub contributor: Option<String>,
    pub contribution_id: Option<String>,
}

/// The row format a JSON row's keys name, if any. The most specific key wins, so a chatml row
/// that also carries, say, a `prompt` field is still chatml.
pub(crate) fn detect(row: &Map<String, Value>) -> Option<RowFormat> {
    if row.contains_key("messages") {
        Some(RowFormat::ChatMl)
    } else if row.contains_key("conversations") {
        Some(RowFormat::ShareGpt)
    } else if row.contains_key("instruction") {
        Some(RowFormat::Alpaca)
    } else if row.contains_key("prompt") {
        Some(RowFormat::PromptResponse)
    } else {
        None
    }
}

/// What a row of `format` must have, for messages about rows that have none of it.
pub(crate) fn expected_fields(format: RowFormat) -> &'static str {
    match format {
        RowFormat::Alpaca => "`instruction`, `output` (and optional `input`, `system`)",
        RowFormat::ShareGpt => "`conversations: [{from, value}]`",
        RowFormat::ChatMl => "`messages: [{role, content}]`",
        RowFormat::PromptResponse => "`prompt`, `response` (and optional `system`)",
    }
}

/// The row as a conversation in `format`, checked: at least one assistant turn, none empty.
pub(crate) fn convert(row: &Map<String, Value>, format: RowFormat) -> Result<Row, String> {
    let messages = match format {
        RowFormat::Alpaca => alpaca(row)?,
        RowFormat::ShareGpt => sharegpt(row)?,
        RowFormat::ChatMl => chatml(row)?,
        RowFormat::PromptResponse => prompt_response(row)?,
    };
    check_conversation(&messages)?;
    Ok(Row {
        messages,
        contributor: optional_text(row, "contributor")?,
        contribution_id: optional_text(row, "contribution_id")?,
    })
}

fn alpaca(row: &Map<String, Value>) -> Result<Vec<ChatMessage>, String> {
    let instruction = required_text(row, "instruction")?;
    let input = optional_text(row, "input")?.unwrap_or_default();
    let output = required_text(row, "output")?;
    let mut messages = system_turn(row)?;
    if let Some(history) = row.get("history").filter(|h| !h.is_null()) {
        let Some(pairs) = history.as_array() else {
            return Err("`history` is not a list of [prompt, answer] pairs".into());
        };
        for (i, pair) in pairs.iter().enumerate() {
            match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(q), Value::String(a)]) => {
                    messages.push(ChatMessage::new("user", q.as_str()));
                    messages.push(ChatMessage::new("assistant", a.as_str()));
                }
                _ => {
                    return Err(format!(
                        "`history[{i}]` is not a [prompt, answer] pair of texts"
                    ));
                }
            }
        }
    }
    let prompt = match (instruction.trim().is_empty(), input.trim().is_empty()) {
        (true, true) => return Err("empty `instruction` and `input`".into()),
        (false, true) => instruction,
        (true, false) => input,
        (false, false) => format!("{instruction}\n\n{input}"),
    };
    messages.push(ChatMessage::new("user", prompt));
    messages.push(ChatMessage::new("assistant", output));
    Ok(messages)
}

fn prompt_response(row: &Map<String, Value>) -> Result<Vec<ChatMessage>, String> {
    let prompt = required_text(row, "prompt")?;
    let response = required_text(row, "response")?;
    let mut messages = system_turn(row)?;
    messages.push(ChatMessage::new("user", prompt));
    messages.push(ChatMessage::new("assistant", response));
    Ok(messages)
}

fn sharegpt(row: &Map<String, Value>) -> Result<Vec<ChatMessage>, String> {
    let turns = json_list(row, "conversations")?;
    let mut messages = system_turn(row)?;
    for (i, turn) in turns.iter().enumerate() {
        let Some(turn) = turn.as_object() else {
            return Err(format!("`conversations[{i}]` is not an object"));
        };
        let speaker = first_text(turn, &["from", "role"])
            .ok_or_else(|| format!("`conversations[{i}]` has no `from`"))?;
        let role = match speaker.as_str() {
            "human" | "user" => "user",
            "gpt" | "assistant" => "assistant",
            "system" => "system",
            other => {
                return Err(format!(
                    "`conversations[{i}]` is from \"{other}\"; expected human, gpt or system"
                ));
            }
        };
        let text = first_text(turn, &["value", "content"])
            .ok_or_else(|| format!("`conversations[{i}]` has no text `value`"))?;
        messages.push(ChatMessage::new(role, text));
    }
    Ok(messages)
}

fn chatml(row: &Map<String, Value>) -> Result<Vec<ChatMessage>, String> {
    let turns = json_list(row, "messages")?;
    let mut messages = Vec::with_capacity(turns.len());
    for (i, turn) in turns.iter().enumerate() {
        let Some(turn) = turn.as_object() else {
            return Err(format!("`messages[{i}]` is not an object"));
        };
        let role = match turn.get("role").and_then(Value::as_str) {
            Some(role @ ("system" | "user" | "assistant")) => role,
            Some(other) => {
                return Err(format!(
                    "`messages[{i}]` has role \"{other}\"; expected system, user or assistant"
                ));
            }
            None => return Err(format!("`messages[{i}]` has no `role`")),
        };
        let content = match turn.get("content") {
            Some(Value::String(s)) => s.clone(),
            // OpenAI-style content parts: keep the text parts.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            Some(Value::Null) | None => String::new(),
            Some(_) => return Err(format!("`messages[{i}].content` is not text")),
        };
        messages.push(ChatMessage::new(role, content));
    }
    Ok(messages)
}

fn check_conversation(messages: &[ChatMessage]) -> Result<(), String> {
    let mut assistant_turns = 0;
    for (i, m) in messages.iter().enumerate() {
        if m.role == "assistant" {
            if m.content.trim().is_empty() {
                return Err(format!("empty assistant turn (turn {})", i + 1));
            }
            assistant_turns += 1;
        }
    }
    if assistant_turns == 0 {
        return Err("no assistant turn to train on".into());
    }
    Ok(())
}

/// A top-level `system` prompt as the first turn, when the row has a non-empty one.
fn system_turn(row: &Map<String, Value>) -> Result<Vec<ChatMessage>, String> {
    Ok(optional_text(row, "system")?
        .filter(|s| !s.trim().is_empty())
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .collect())
}

/// A list field, or JSON text holding one (CSV and Parquet cells are text).
fn json_list(row: &Map<String, Value>, key: &str) -> Result<Vec<Value>, String> {
    match row.get(key) {
        Some(Value::Array(list)) => Ok(list.clone()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(list)) => Ok(list),
            Ok(_) => Err(format!("`{key}` is not a list")),
            Err(e) => Err(format!("`{key}` is not valid JSON: {e}")),
        },
        Some(Value::Null) | None => Err(format!("missing `{key}`")),
        Some(_) => Err(format!("`{key}` is not a list")),
    }
}

fn required_text(row: &Map<String, Value>, key: &str) -> Result<String, String> {
    optional_text(row, key)?.ok_or_else(|| format!("missing `{key}`"))
}

/// A text field; numbers are taken as their text (ids are sometimes numeric), null as absent.
fn optional_text(row: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("`{key}` is not text")),
    }
}

fn first_text(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn alpaca_joins_instruction_and_input() {
        let row = object(json!({"instruction": "Sum", "input": "1 2", "output": "3",
                                "system": "Be terse", "contributor": "0xabc"}));
        assert_eq!(detect(&row), Some(RowFormat::Alpaca));
        let r = convert(&row, RowFormat::Alpaca).expect("converts");
        assert_eq!(
            r.messages,
            vec![
                ChatMessage::new("system", "Be terse"),
                ChatMessage::new("user", "Sum\n\n1 2"),
                ChatMessage::new("assistant", "3"),
            ]
        );
        assert_eq!(r.contributor.as_deref(), Some("0xabc"));
    }

    #[test]
    fn sharegpt_roles_are_mapped_and_unknown_ones_named() {
        let row = object(json!({"conversations": [
            {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}));
        let r = convert(&row, RowFormat::ShareGpt).expect("converts");
        assert_eq!(r.messages[1], ChatMessage::new("assistant", "Hello"));
        let row = object(json!({"conversations": [
            {"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}]}));
        let err = convert(&row, RowFormat::ShareGpt).err().expect("fails");
        assert!(err.contains("\"bot\""), "{err}");
    }

    #[test]
    fn empty_assistant_turns_and_missing_fields_are_refused() {
        let row = object(json!({"instruction": "Sum", "output": "  "}));
        let err = convert(&row, RowFormat::Alpaca).err().expect("fails");
        assert!(err.contains("empty assistant turn"), "{err}");
        let row = object(json!({"instruction": "Sum"}));
        let err = convert(&row, RowFormat::Alpaca).err().expect("fails");
        assert_eq!(err, "missing `output`");
        let row = object(json!({"messages": [{"role": "user", "content": "Hi"}]}));
        let err = convert(&row, RowFormat::ChatMl).err().expect("fails");
        assert_eq!(err, "no assistant turn to train on");
    }

    #[test]
    fn chatml_accepts_json_text_and_content_parts() {
        let row = object(json!({"messages":
            "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}]},{\"role\":\"assistant\",\"content\":\"Yo\"}]"}));
        let r = convert(&row, RowFormat::ChatMl).expect("converts");
        assert_eq!(r.messages[0], ChatMessage::new("user", "Hi"));
    }
}
