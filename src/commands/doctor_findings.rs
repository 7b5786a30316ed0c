//! `doctor`'s verdicts: one line per check, `ok`, `warn` or `fail`, what
//! was found and what to do; and the exit code they add up to. The checks
//! themselves (all reads) are in `commands/doctor.rs`.

use std::fmt;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// `run` works, but something deserves a look (or could not be checked).
    Warn,
    /// `run` would not work (or not fully).
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padded, so the check names line up.
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        })
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub check: String,
    pub found: String,
    /// Empty when there is nothing to do.
    pub todo: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {}: {}", self.level, self.check, self.found)?;
        if !self.todo.is_empty() {
            write!(f, " — {}", self.todo)?;
        }
        Ok(())
    }
}

/// Every finding so far, and whether the configuration itself is wrong.
#[derive(Debug, Default)]
pub struct Findings {
    pub findings: Vec<Finding>,
    /// A configuration or policy error: exit 2, as `run` would.
    pub bad_configuration: bool,
}

impl Findings {
    pub fn add(
        &mut self,
        level: Level,
        check: impl Into<String>,
        found: impl Into<String>,
        todo: impl Into<String>,
    ) {
        let finding = Finding {
            level,
            check: check.into(),
            found: found.into(),
            todo: todo.into(),
        };
        println!("{finding}");
        self.findings.push(finding);
    }

    pub fn ok(&mut self, check: impl Into<String>, found: impl Into<String>) {
        self.add(Level::Ok, check, found, "");
    }

    /// 0 when `run` would work, 1 when it would not, 2 on bad configuration.
    pub fn exit(&self) -> crate::domain::exit::Exit {
        use crate::domain::exit::Exit;
        if self.bad_configuration {
            Exit::Usage
        } else if self.findings.iter().any(|f| f.level == Level::Fail) {
            Exit::Failed
        } else {
            Exit::Success
        }
    }
}

/// "1 repository" / "3 repositories".
pub fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::exit::Exit;

    #[test]
    fn lines_and_verdict() {
        let finding = Finding {
            level: Level::Fail,
            check: "registry access (g/p)".into(),
            found: "granted pull".into(),
            todo: "use a Developer".into(),
        };
        assert_eq!(
            finding.to_string(),
            "fail  registry access (g/p): granted pull — use a Developer"
        );
        let ok = Finding {
            level: Level::Ok,
            check: "policy".into(),
            found: "valid".into(),
            todo: String::new(),
        };
        assert_eq!(ok.to_string(), "ok    policy: valid");
        let mut findings = Findings::default();
        assert_eq!(findings.exit(), Exit::Success);
        findings.findings.push(ok);
        findings.findings.push(Finding {
            level: Level::Warn,
            ..finding.clone()
        });
        assert_eq!(findings.exit(), Exit::Success);
        findings.findings.push(finding);
        assert_eq!(findings.exit(), Exit::Failed);
        findings.bad_configuration = true;
        assert_eq!(findings.exit(), Exit::Usage);
    }
}
