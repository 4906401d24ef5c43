//! The ACL file (`--aclfile`), in Redis's format: one `user <name> <rule> ...` line per user,
//! so a file written by Redis's `ACL SAVE` loads here and the reverse. Blank lines and lines
//! starting with `#` are skipped.

use super::user::User;

/// A line of the file that is not a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FileError {
    pub line: usize,
    pub message: String,
}

/// The users of an ACL file: each user's name and rules, in the file's order.
pub fn parse(text: &str) -> Result<Vec<(String, Vec<String>)>, FileError> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_ascii_whitespace();
        if words.next() != Some("user") {
            return Err(FileError {
                line: line_no,
                message: "a line must start with 'user'".into(),
            });
        }
        let Some(name) = words.next() else {
            return Err(FileError {
                line: line_no,
                message: "a user line needs a name".into(),
            });
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(FileError {
                line: line_no,
                message: format!("user '{name}' is defined twice"),
            });
        }
        out.push((name.to_string(), words.map(str::to_string).collect()));
    }
    Ok(out)
}

/// The file's text for `users`: their ACL LIST lines, one per line.
pub fn format(users: &[std::sync::Arc<User>]) -> String {
    let mut out = String::new();
    for u in users {
        out.push_str(&u.describe());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_users_and_anything_else_is_refused_with_its_line() {
        let users = parse("# ops\nuser default on nopass ~* &* +@all\n\nuser alice on #abc +get\n");
        assert_eq!(
            users.map(|u| u.into_iter().map(|(n, r)| (n, r.len())).collect::<Vec<_>>()),
            Ok(vec![("default".to_string(), 5), ("alice".to_string(), 3)])
        );
        assert_eq!(parse("usr x").map_err(|e| e.line), Err(1));
        assert_eq!(parse("user a on\nuser a off").map_err(|e| e.line), Err(2));
        assert_eq!(parse("\n\nuser").map_err(|e| e.line), Err(3));
    }
}
