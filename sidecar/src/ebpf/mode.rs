//! `--attach`: which attach family to try first, parsed where it is defined, and the order in
//! which families are tried.

use std::fmt;
use std::str::FromStr;

use super::btf_select::BtfSource;
use crate::change::Family;

/// `--attach`: which family to try first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Fentry,
    Kprobe,
    Tracepoint,
}

impl AttachMode {
    /// The spellings `--attach` accepts, for help and errors.
    pub const CHOICES: &'static str = "auto, fentry, kprobe or tracepoint";

    /// Families to try, best first. `auto` starts with fentry only when the BTF is the
    /// system one (fentry needs the running kernel's own type ids).
    pub fn plan(self, source: BtfSource) -> Vec<Family> {
        let all = [Family::Fentry, Family::Kprobe, Family::Tracepoint];
        let first = match self {
            Self::Auto if source == BtfSource::System => 0,
            Self::Auto => 1,
            Self::Fentry => 0,
            Self::Kprobe => 1,
            Self::Tracepoint => 2,
        };
        all[first..].to_vec()
    }
}

/// A word that is not an attach mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAttachMode(pub String);

impl fmt::Display for UnknownAttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an attach mode (use {})",
            self.0,
            AttachMode::CHOICES
        )
    }
}

impl std::error::Error for UnknownAttachMode {}

impl FromStr for AttachMode {
    type Err = UnknownAttachMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "fentry" => Ok(Self::Fentry),
            "kprobe" => Ok(Self::Kprobe),
            "tracepoint" => Ok(Self::Tracepoint),
            _ => Err(UnknownAttachMode(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_contract() {
        use Family::*;
        let cases: [(AttachMode, BtfSource, &[Family]); 5] = [
            (
                AttachMode::Auto,
                BtfSource::System,
                &[Fentry, Kprobe, Tracepoint],
            ),
            (AttachMode::Auto, BtfSource::Cache, &[Kprobe, Tracepoint]),
            (
                AttachMode::Fentry,
                BtfSource::Cache,
                &[Fentry, Kprobe, Tracepoint],
            ),
            (AttachMode::Kprobe, BtfSource::System, &[Kprobe, Tracepoint]),
            (AttachMode::Tracepoint, BtfSource::System, &[Tracepoint]),
        ];
        for (attach, source, want) in cases {
            assert_eq!(attach.plan(source), want, "{attach:?} with {source:?} BTF");
        }
    }

    #[test]
    fn attach_modes_parse() {
        assert_eq!("kprobe".parse::<AttachMode>(), Ok(AttachMode::Kprobe));
        assert!("kprobes"
            .parse::<AttachMode>()
            .unwrap_err()
            .to_string()
            .contains("kprobes"));
    }
}
