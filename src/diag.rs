//! Located warnings: the second of natcheck's three kinds of trouble. A malformed packet
//! is only counted; a truncated or unreadable part of an input is a `Warning` naming the
//! file and where in it (byte offset, frame number or line:column); bad arguments fail
//! before any work starts. Warnings are printed to stderr and make the run exit 2.

use std::fmt;

use serde::Serialize;

/// Exit status contract: 0 clean, 1 findings at or above `--fail-on`, 2 input errors
/// (including warnings about unreadable parts of an input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    Clean = 0,
    Findings = 1,
    Error = 2,
}

/// Where in an input a problem sits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Location {
    /// The input as a whole.
    File,
    /// A byte offset into the (decompressed) input, with the frame number when known.
    Byte { offset: u64, frame: Option<u64> },
    /// A 1-based line and column of a text input.
    Line { line: u64, column: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Warning {
    /// The input's path as given on the command line (`-` for stdin).
    pub source: String,
    pub location: Location,
    pub message: String,
}

impl Warning {
    pub fn new(source: impl Into<String>, location: Location, message: impl Into<String>) -> Self {
        Warning {
            source: source.into(),
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File => write!(f, "{}: {}", self.source, self.message),
            Location::Byte {
                offset,
                frame: Some(n),
            } => write!(
                f,
                "{}: byte {offset} (frame {n}): {}",
                self.source, self.message
            ),
            Location::Byte {
                offset,
                frame: None,
            } => {
                write!(f, "{}: byte {offset}: {}", self.source, self.message)
            }
            Location::Line { line, column } => {
                write!(f, "{}:{line}:{column}: {}", self.source, self.message)
            }
        }
    }
}
