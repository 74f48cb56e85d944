//! Argument-vector templates: `["kubectl", "scale", "deployment/{deployment}",
//! "--replicas={replicas}"]` filled with validated values, never a shell string.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use selfheal_core::{Command, Error, Result};
use serde_json::Value;

/// What a template parameter may hold. Every rule refuses a value that starts with `-`
/// (it would be read as an option), control characters, and anything over 253 bytes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ParamRule {
    /// A name of a unit, container, deployment or namespace: ASCII letters, digits and
    /// `_ . @ : -`, starting with a letter or digit.
    Name,
    /// An integer within `min..=max`.
    Integer {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// One of these exact values.
    OneOf(Vec<String>),
    /// A value the whole of which matches this regex (anchored for you).
    Pattern(Regex),
}

impl ParamRule {
    /// A rule from a regex the whole value must match.
    ///
    /// Errors: `InvalidInput` for an invalid regex.
    pub fn pattern(regex: &str) -> Result<Self> {
        Regex::new(&format!("^(?:{regex})$"))
            .map(ParamRule::Pattern)
            .map_err(|e| {
                Error::invalid(format!(
                    "invalid parameter regex `{regex}`: {e}; fix the regex"
                ))
            })
    }

    /// `value` as the text put into the argument, if this rule allows it.
    pub(crate) fn check(&self, name: &str, value: &Value) -> Result<String> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                return Err(Error::invalid(format!(
                    "parameter `{name}` must be a string or an integer, got {value}"
                )));
            }
        };
        let refuse = |why: &str| {
            Err(Error::invalid(format!(
                "parameter `{name}` = {value} is refused: {why}"
            )))
        };
        if text.is_empty() {
            return refuse("it is empty");
        }
        if text.len() > 253 {
            return refuse("it is longer than 253 bytes");
        }
        if text.starts_with('-') {
            return refuse("it starts with `-` and would be read as an option");
        }
        if text.chars().any(char::is_control) {
            return refuse("it holds control characters");
        }
        match self {
            ParamRule::Name => {
                let first_ok = text
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
                let all_ok = text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.@:-".contains(c));
                if !(first_ok && all_ok) || text.contains("..") {
                    return refuse(
                        "a name may hold only ASCII letters, digits and `_ . @ : -`, starting with a letter or digit",
                    );
                }
            }
            ParamRule::Integer { min, max } => match text.parse::<i64>() {
                Ok(n) if (*min..=*max).contains(&n) => {}
                _ => return refuse(&format!("it must be an integer from {min} to {max}")),
            },
            ParamRule::OneOf(allowed) => {
                if !allowed.contains(&text) {
                    return refuse(&format!("it must be one of {}", allowed.join(", ")));
                }
            }
            ParamRule::Pattern(re) => {
                if !re.is_match(&text) {
                    return refuse(&format!("it must match `{}`", re.as_str()));
                }
            }
        }
        Ok(text)
    }

    pub(crate) fn schema(&self) -> Value {
        match self {
            ParamRule::Name => {
                serde_json::json!({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@:-]*$"})
            }
            ParamRule::Integer { min, max } => {
                serde_json::json!({"type": "integer", "minimum": min, "maximum": max})
            }
            ParamRule::OneOf(v) => serde_json::json!({"type": "string", "enum": v}),
            ParamRule::Pattern(re) => serde_json::json!({"type": "string", "pattern": re.as_str()}),
        }
    }
}

/// An argument vector with `{name}` placeholders in its arguments (not its program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgTemplate {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
}

impl ArgTemplate {
    /// Parses `argv`, refusing an empty one, a placeholder in the program, and
    /// unbalanced braces.
    pub(crate) fn new<I, S>(argv: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut argv = argv.into_iter().map(Into::into);
        let program = argv.next().filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::invalid("a command template needs a program as its first element")
        })?;
        if program.contains(['{', '}']) {
            return Err(Error::invalid(format!(
                "the program `{program}` cannot be a placeholder; name the program itself"
            )));
        }
        let template = ArgTemplate {
            program,
            args: argv.collect(),
        };
        for arg in &template.args {
            placeholders(arg)?;
        }
        Ok(template)
    }

    /// Every placeholder name it uses.
    pub(crate) fn names(&self) -> BTreeSet<String> {
        self.args
            .iter()
            .flat_map(|a| placeholders(a).unwrap_or_default())
            .collect()
    }

    /// The command with every placeholder replaced by its (already checked) value.
    pub(crate) fn render(&self, values: &BTreeMap<String, String>) -> Result<Command> {
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            let mut out = String::new();
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let close = rest[open..]
                    .find('}')
                    .map(|c| open + c)
                    .unwrap_or(rest.len());
                let name = &rest[open + 1..close];
                let value = values.get(name).ok_or_else(|| {
                    Error::invalid(format!(
                        "parameter `{name}` is missing; give it in the fix's params"
                    ))
                })?;
                out.push_str(value);
                rest = &rest[(close + 1).min(rest.len())..];
            }
            out.push_str(rest);
            args.push(out);
        }
        Ok(Command::new(self.program.clone(), args))
    }
}

/// The placeholder names in `arg`.
fn placeholders(arg: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut rest = arg;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(Error::invalid(format!(
                "unbalanced `}}` in template argument `{arg}`"
            )));
        }
        let Some(len) = rest[open + 1..].find(['{', '}']) else {
            return Err(Error::invalid(format!(
                "unclosed `{{` in template argument `{arg}`"
            )));
        };
        let close = open + 1 + len;
        if rest.as_bytes()[close] == b'{' {
            return Err(Error::invalid(format!(
                "nested `{{` in template argument `{arg}`"
            )));
        }
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid(format!(
                "invalid placeholder `{{{name}}}` in `{arg}`; use letters, digits and `_`"
            )));
        }
        names.push(name.to_owned());
        rest = &rest[close + 1..];
    }
    Ok(names)
}
