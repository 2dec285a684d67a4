//! Colour in the table report: severities, and the addresses and ports NAT changed,
//! as ANSI escapes when [`super::View::colour`] says so (a terminal, `--color`,
//! `NO_COLOR`) and none otherwise. Stripped of its escapes, coloured text is the
//! plain text, character for character.

use anstyle::{AnsiColor, Style};

use crate::audit::Severity;
use crate::flows::IcmpError;
use crate::model::Tuple;
use crate::report::fmt::{error_tuple, tuple, tuple_marked};

/// An address or port that differs from the hop before.
const CHANGED: Style = AnsiColor::Magenta.on_default().bold();

/// Writes text with or without colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    fn with(self, style: Style, text: &str) -> String {
        if self.on {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    /// `[error]` in red, `[warning]` in yellow, `[info]` in cyan.
    pub fn severity(self, s: Severity) -> String {
        let style = match s {
            Severity::Error => AnsiColor::Red.on_default().bold(),
            Severity::Warning => AnsiColor::Yellow.on_default().bold(),
            Severity::Info => AnsiColor::Cyan.on_default(),
        };
        self.with(style, &format!("[{s}]"))
    }

    /// A flow's tuple: [`Paint::tuple`], or for an ICMP error its endpoints and the
    /// error ([`error_tuple`]).
    pub fn flow_tuple(
        self,
        t: &Tuple,
        error: Option<&IcmpError>,
        before: Option<&Tuple>,
    ) -> String {
        match error {
            Some(e) => error_tuple(t, e.icmp_type, e.code),
            None => self.tuple(t, before),
        }
    }

    /// A tuple, the addresses and ports that differ from `before` set apart.
    pub fn tuple(self, t: &Tuple, before: Option<&Tuple>) -> String {
        match before.filter(|_| self.on) {
            None => tuple(t),
            Some(b) => tuple_marked(t, &|part, text| {
                if part.differs(t, b) {
                    self.with(CHANGED, &text)
                } else {
                    text
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;

    #[test]
    fn colour_marks_only_what_changed_and_strips_to_the_plain_text() {
        let a = Tuple::of(Proto::Tcp, "172.17.0.2", 40000, "203.0.113.2", 80);
        let b = Tuple::of(Proto::Tcp, "203.0.113.1", 40000, "203.0.113.2", 80);
        let on = Paint { on: true };
        let coloured = on.tuple(&b, Some(&a));
        assert_eq!(
            coloured,
            format!(
                "{}203.0.113.1{}:40000 -> 203.0.113.2:80",
                CHANGED.render(),
                CHANGED.render_reset()
            )
        );
        assert_eq!(
            anstream::adapter::strip_str(&coloured).to_string(),
            tuple(&b)
        );
        assert_eq!(Paint::default().tuple(&b, Some(&a)), tuple(&b));
        assert_eq!(Paint::default().severity(Severity::Error), "[error]");
        assert!(on.severity(Severity::Error).starts_with('\x1b'));
    }
}
