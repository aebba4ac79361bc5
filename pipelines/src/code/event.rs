//! The code event of the specification: `code` and its `error_context` (`error_type`,
//! `error_message`, `error_line`), plus optional `language` (default python), `file`, `repository`
//! and `timestamp`. Unknown fields are ignored.

use super::fix::Language;
use inflight_engine::time::rfc3339;
use inflight_engine::{Event, Key, Millis, ParseError};
use serde::{Deserialize, Serialize};

/// Largest `code` accepted (bytes); bigger events are dead-lettered as invalid.
pub const MAX_CODE: usize = 64 * 1024;

/// What went wrong, as the reporter saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorContext {
    /// e.g. `SyntaxError`, `IndentationError`, `NameError`.
    pub error_type: String,
    /// The message.
    #[serde(default)]
    pub error_message: String,
    /// 1-based line of the error, if known.
    #[serde(default)]
    pub error_line: Option<usize>,
}

/// Code with an error to fix. (No skipped fields here: events travel between processes in a format
/// without field names.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeEvent {
    /// The source code.
    pub code: String,
    /// The error reported.
    pub error_context: ErrorContext,
    /// `python` (default), `javascript`.
    #[serde(default)]
    pub language: Option<String>,
    /// The file path in the repository.
    #[serde(default)]
    pub file: Option<String>,
    /// The repository.
    #[serde(default)]
    pub repository: Option<String>,
    /// When the error was reported. Events without one (the specification's example has none)
    /// take their Kafka record's time, or time 0 in files: fixing does not depend on time.
    #[serde(default, with = "rfc3339::option")]
    pub timestamp: Option<Millis>,
    /// The parsed language (set from `language` when parsed).
    #[serde(default)]
    pub lang: Language,
}

impl CodeEvent {
    /// The key: `repository/file`, or whichever of them is given, or `-`.
    pub fn key(&self) -> Key {
        match (self.repository.as_deref(), self.file.as_deref()) {
            (Some(r), Some(f)) => format!("{r}/{f}").into(),
            (Some(one), None) | (None, Some(one)) => one.into(),
            (None, None) => "-".into(),
        }
    }
}

impl Event for CodeEvent {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with_time(line, None)
    }

    fn parse_with_time(record: &[u8], record_time: Option<Millis>) -> Result<Self, ParseError> {
        let mut event: CodeEvent = serde_json::from_slice(record).map_err(|e| ParseError::malformed(e.to_string()))?;
        event.lang = match event.language.as_deref() {
            None => Language::Python,
            Some(name) => Language::from_name(name).ok_or_else(|| {
                ParseError::invalid(format!("language {name:?} is not supported (python, javascript)"))
            })?,
        };
        if event.code.len() > MAX_CODE {
            return Err(ParseError::invalid(format!("code is {} bytes, more than {MAX_CODE}", event.code.len())));
        }
        if event.error_context.error_line == Some(0) {
            return Err(ParseError::invalid("error_line is 1-based; 0 is not a line"));
        }
        event.timestamp = event.timestamp.or(record_time);
        Ok(event)
    }

    fn event_time(&self) -> Millis {
        self.timestamp.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_specification_example() {
        let e = CodeEvent::parse(crate::spec_example("code-event.json").as_bytes()).unwrap();
        assert_eq!((e.lang, e.error_context.error_line, e.event_time()), (Language::Python, Some(4), 0));
        assert!(e.code.contains("for price in prices\n"));
        assert_eq!(e.key(), "-");
    }

    #[test]
    fn rejects_bad_events_with_reasons() {
        let big =
            format!(r#"{{"code":"{}","error_context":{{"error_type":"SyntaxError"}}}}"#, "x".repeat(MAX_CODE + 1));
        let cases: [(&[u8], &str); 5] = [
            (br#"{"code":"x = 1","error_context":{"error_type":"E"},"language":"cobol"}"#, "not supported"),
            (br#"{"error_context":{"error_type":"E"}}"#, "missing field `code`"),
            (br#"{"code":"x","error_context":{"error_type":"E","error_line":0}}"#, "1-based"),
            (br#"{"code":"x","error_context":{"error_type":"E","error_line":"four"}}"#, "invalid type"),
            (big.as_bytes(), "more than"),
        ];
        for (line, want) in cases {
            let err = CodeEvent::parse(line).unwrap_err();
            assert!(err.message.contains(want), "{want}: {}", err.message);
        }
    }
}
