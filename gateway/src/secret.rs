//! Secrets the gateway reads (passwords, keys, secret URLs): from the environment or a file,
//! never printed. A leaf module: it imports nothing of the crate.

use std::path::PathBuf;

/// A password, key or secret URL read from the environment or a file: never printed (its
/// `Debug` is `<redacted>`), never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    /// A secret from its text.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that uses it (a connection, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Reads a secret named by a pair of keys: `(env key, variable)` and `(file key, path)`, at most
/// one given. The file's trailing newline is dropped; an unset or empty variable, or an
/// unreadable or empty file, is an error naming its key. `Ok(None)`: neither given.
pub fn read_secret(
    env: (&'static str, Option<&str>),
    file: (&'static str, Option<PathBuf>),
) -> Result<Option<Secret>, (&'static str, String)> {
    let text = match (env.1, file.1) {
        (Some(_), Some(_)) => return Err((env.0, format!("give {} or {}, not both", env.0, file.0))),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => return Err((env.0, format!("the environment variable {var} is empty"))),
            Err(_) => return Err((env.0, format!("the environment variable {var} is not set"))),
        },
        (None, Some(path)) => {
            let v = std::fs::read_to_string(&path)
                .map_err(|e| (file.0, format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if v.is_empty() {
                return Err((file.0, format!("{} is empty", path.display())));
            }
            v
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret(text)))
}
