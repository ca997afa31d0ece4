//! Streaming JSON sources: a top-level array read one element at a time (only the current
//! record is in memory), or JSON Lines. Errors name the JSON path of the record (`[12]`, or
//! `line 5` for JSON Lines) and, for syntax errors, serde_json's line and column.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::Value;

use super::ImportError;

/// Whether to read on after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// One record of a JSON source and where it is.
pub struct Record<'a> {
    pub file: &'a Path,
    /// `[12]` (array element) or `line 5` (JSON Lines).
    pub at: String,
    pub value: Value,
}

impl Record<'_> {
    fn path_of(&self, key: &str) -> String {
        if self.at.starts_with('[') { format!("{}.{key}", self.at) } else { format!("{}: .{key}", self.at) }
    }

    /// An error about `key` of this record.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ImportError {
        ImportError::JsonField { path: self.file.to_path_buf(), json_path: self.path_of(key), message: message.into() }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    /// A field read as text: strings as they are, numbers and booleans printed; missing or
    /// null is `None`; arrays and objects are an error.
    pub fn opt_text(&self, key: &str) -> Result<Option<String>, ImportError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(other) => Err(self.error(key, format!("expected a string, found {}", kind(other)))),
        }
    }

    /// A required text field.
    pub fn text(&self, key: &str) -> Result<String, ImportError> {
        self.opt_text(key)?.ok_or_else(|| self.error(key, "missing"))
    }

    /// Checks that the record is a JSON object.
    pub fn object(&self) -> Result<&serde_json::Map<String, Value>, ImportError> {
        self.value.as_object().ok_or_else(|| ImportError::JsonField {
            path: self.file.to_path_buf(),
            json_path: self.at.clone(),
            message: format!("expected an object, found {}", kind(&self.value)),
        })
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Calls `f` on every record of `path` in order until it says stop.
pub fn for_each_record(path: &Path, mut f: impl FnMut(Record<'_>) -> Result<Flow, ImportError>) -> Result<(), ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Read { path: path.to_path_buf(), source })?;
    let mut reader = BufReader::new(file);
    let first = loop {
        let buf = reader.fill_buf().map_err(|source| ImportError::Read { path: path.to_path_buf(), source })?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    let syntax = |json_path: String, e: serde_json::Error| ImportError::Json {
        path: path.to_path_buf(),
        json_path,
        line: e.line(),
        column: e.column(),
        message: bare_message(&e),
    };
    match first {
        None => {
            Err(ImportError::Line { path: path.to_path_buf(), line: 1, message: "empty file: expected a JSON array or JSON Lines".into() })
        }
        Some(b'[') => {
            let mut index = 0usize;
            let mut refused: Option<ImportError> = None;
            let mut stopped = false;
            let mut de = serde_json::Deserializer::from_reader(reader);
            let visitor = EachElement { file: path, f: &mut f, index: &mut index, refused: &mut refused, stopped: &mut stopped };
            let result = (&mut de).deserialize_seq(visitor);
            if let Some(e) = refused {
                return Err(e);
            }
            if stopped {
                return Ok(());
            }
            result.map_err(|e| syntax(format!("[{index}]"), e))?;
            de.end().map_err(|e| syntax("after the top-level array".into(), e))
        }
        Some(_) => {
            for (i, line) in reader.lines().enumerate() {
                let n = i + 1;
                let line = line.map_err(|source| ImportError::Read { path: path.to_path_buf(), source })?;
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&line).map_err(|e| ImportError::Json {
                    path: path.to_path_buf(),
                    json_path: format!("line {n}"),
                    line: n,
                    column: e.column(),
                    message: bare_message(&e),
                })?;
                if f(Record { file: path, at: format!("line {n}"), value })? == Flow::Stop {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// serde_json's message without its " at line L column C" (the error says where already).
fn bare_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

struct EachElement<'a, 'p, F> {
    file: &'p Path,
    f: &'a mut F,
    index: &'a mut usize,
    refused: &'a mut Option<ImportError>,
    stopped: &'a mut bool,
}

impl<'de, F> Visitor<'de> for EachElement<'_, '_, F>
where
    F: FnMut(Record<'_>) -> Result<Flow, ImportError>,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            match (self.f)(Record { file: self.file, at: format!("[{}]", self.index), value }) {
                Ok(Flow::Continue) => *self.index += 1,
                Ok(Flow::Stop) => {
                    *self.stopped = true;
                    return Err(de::Error::custom("stopped at --limit"));
                }
                Err(e) => {
                    *self.refused = Some(e);
                    return Err(de::Error::custom("record refused"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::test_support::Scratch;

    fn collect(path: &Path) -> Result<Vec<(String, Value)>, ImportError> {
        let mut got = Vec::new();
        for_each_record(path, |r| {
            got.push((r.at.clone(), r.value));
            Ok(Flow::Continue)
        })?;
        Ok(got)
    }

    #[test]
    fn arrays_and_json_lines_give_the_same_records() {
        let s = Scratch::new("json-both");
        let a = s.write("a.json", "[\n {\"q\": 1},\n {\"q\": 2}\n]\n");
        let l = s.write("l.jsonl", "{\"q\": 1}\n\n{\"q\": 2}\n");
        let (a, l) = (collect(&a).unwrap(), collect(&l).unwrap());
        assert_eq!(a.iter().map(|r| &r.1).collect::<Vec<_>>(), l.iter().map(|r| &r.1).collect::<Vec<_>>());
        assert_eq!((a[1].0.as_str(), l[1].0.as_str()), ("[1]", "line 3"));
    }

    #[test]
    fn a_truncated_array_names_the_element_and_the_line() {
        let s = Scratch::new("json-trunc");
        let p = s.write("t.json", "[\n {\"q\": 1},\n {\"q\": 2},\n {\"q\": ");
        let err = collect(&p).unwrap_err().to_string();
        assert!(err.ends_with("t.json: at [2] (line 4, column 7): EOF while parsing a value"), "{err}");
    }

    #[test]
    fn a_bad_json_line_names_its_line() {
        let s = Scratch::new("json-line");
        let p = s.write("l.jsonl", "{\"q\": 1}\n{\"q\": }\n");
        let err = collect(&p).unwrap_err().to_string();
        assert!(err.contains("at line 2 (line 2"), "{err}");
    }

    #[test]
    fn stopping_early_reads_no_further() {
        let s = Scratch::new("json-stop");
        // The third element is broken: a stop after the first never reaches it.
        let p = s.write("s.json", "[{\"q\": 1}, {\"q\": 2}, {\"q\": ]");
        let mut n = 0;
        for_each_record(&p, |_| {
            n += 1;
            Ok(Flow::Stop)
        })
        .unwrap();
        assert_eq!(n, 1);
    }
}
