//! One user and its rules, as Redis's `ACL SETUSER` reads them.
//!
//! | rule | effect |
//! | --- | --- |
//! | `on`, `off` | may authenticate or not |
//! | `>pass`, `<pass`, `#sha256`, `!sha256` | add or remove a password (kept as its SHA-256) |
//! | `nopass`, `resetpass` | any password works / none is set |
//! | `+cmd`, `-cmd`, `+cmd\|sub`, `-cmd\|sub` | allow or deny a command (all its subcommands) or one subcommand |
//! | `+@cat`, `-@cat`, `allcommands` (`+@all`), `nocommands` (`-@all`) | a whole category, or every command |
//! | `~pattern`, `%R~pattern`, `%W~pattern`, `allkeys` (`~*`), `resetkeys` | the keys it may touch (read, write or both) |
//! | `&pattern`, `allchannels` (`&*`), `resetchannels` | the pub/sub channels it may use |
//! | `reset` | back to a new user's state: `resetpass resetkeys resetchannels off -@all` |
//!
//! Keys are what the command table's key positions name: the client id of RL.CHECK, RL.PEEK
//! and RL.RESET, a CL.THROTTLE key, the keys of the key-value commands. So `~tenant1:*` keeps
//! one tenant's credentials off another tenant's clients.

use super::catalog::Catalog;
use super::category::Category;
use ratelimitd_protocol::parse::glob_match;
use sha2::{Digest, Sha256};

/// Why a rule was refused; `Display` is Redis's text for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("Syntax error")]
    Syntax,
    #[error("Unknown command or category name in ACL")]
    UnknownCommand,
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    KeyAfterAll,
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    ChannelAfterAll,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
}

/// What a key pattern allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    ReadWrite,
    Read,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPattern {
    pattern: Vec<u8>,
    access: KeyAccess,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// SHA-256 of each password.
    passwords: Vec<[u8; 32]>,
    /// One bit per catalog id.
    commands: Vec<u64>,
    /// The command rules as ACL LIST shows them, from the last `+@all` / `-@all` on.
    command_rules: Vec<String>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Vec<u8>>,
}

/// A password's SHA-256, as Redis keeps it.
pub fn hash_password(pass: &[u8]) -> [u8; 32] {
    Sha256::digest(pass).into()
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(text: &[u8]) -> Result<[u8; 32], RuleError> {
    if text.len() != 64
        || !text
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    {
        return Err(RuleError::BadHash);
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| RuleError::BadHash)?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| RuleError::BadHash)?;
    }
    Ok(out)
}

/// Compare two hashes in time independent of where they differ.
fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Patterns may not hold spaces or NULs: they are written back space-separated (ACL LIST,
/// the ACL file), as Redis refuses them too.
fn valid_pattern(p: &[u8]) -> bool {
    !p.iter().any(|c| c.is_ascii_whitespace() || *c == 0)
}

impl User {
    /// A new user: off, no password, no commands, no keys, no channels.
    pub fn new(name: &str, catalog: &Catalog) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            commands: vec![0; catalog.len().div_ceil(64)],
            command_rules: vec!["-@all".to_string()],
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// The `default` user as a daemon starts: `on nopass ~* &* +@all`.
    pub fn default_user(catalog: &Catalog) -> User {
        let mut u = User::new("default", catalog);
        for rule in ["on", "nopass", "~*", "&*", "+@all"] {
            // These rules are ours and valid; a failure would be a programming error that the
            // tests below catch.
            let _ = u.apply(rule.as_bytes(), catalog);
        }
        u
    }

    /// Apply one rule.
    pub fn apply(&mut self, rule: &[u8], catalog: &Catalog) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        match &lower[..] {
            b"" => {}
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            b"allkeys" => {
                self.all_keys = true;
                self.keys.clear();
            }
            b"resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            b"allchannels" => {
                self.all_channels = true;
                self.channels.clear();
            }
            b"resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            b"allcommands" | b"+@all" => self.set_all(true),
            b"nocommands" | b"-@all" => self.set_all(false),
            b"reset" => {
                for r in ["resetpass", "resetkeys", "resetchannels", "off", "-@all"] {
                    self.apply(r.as_bytes(), catalog)?;
                }
            }
            _ => return self.apply_prefixed(rule, catalog),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &[u8], catalog: &Catalog) -> Result<(), RuleError> {
        let (first, rest) = rule.split_first().ok_or(RuleError::Syntax)?;
        match first {
            b'>' => {
                self.add_password(hash_password(rest));
                Ok(())
            }
            b'#' => {
                let h = parse_hash(rest)?;
                self.add_password(h);
                Ok(())
            }
            b'<' | b'!' => {
                let h = if *first == b'<' {
                    hash_password(rest)
                } else {
                    parse_hash(rest)?
                };
                let before = self.passwords.len();
                self.passwords.retain(|p| !same_hash(p, &h));
                if self.passwords.len() == before {
                    return Err(RuleError::NoSuchPassword);
                }
                Ok(())
            }
            b'~' => self.add_key(rest, KeyAccess::ReadWrite),
            b'%' => {
                let tilde = rest
                    .iter()
                    .position(|&c| c == b'~')
                    .ok_or(RuleError::Syntax)?;
                let (flags, pattern) = (&rest[..tilde], &rest[tilde + 1..]);
                let (mut read, mut write) = (false, false);
                for f in flags {
                    match f.to_ascii_uppercase() {
                        b'R' => read = true,
                        b'W' => write = true,
                        _ => return Err(RuleError::Syntax),
                    }
                }
                let access = match (read, write) {
                    (true, true) => KeyAccess::ReadWrite,
                    (true, false) => KeyAccess::Read,
                    (false, true) => KeyAccess::Write,
                    (false, false) => return Err(RuleError::Syntax),
                };
                self.add_key(pattern, access)
            }
            b'&' => {
                if !valid_pattern(rest) {
                    return Err(RuleError::Syntax);
                }
                if rest == b"*" {
                    self.all_channels = true;
                    self.channels.clear();
                } else if self.all_channels {
                    return Err(RuleError::ChannelAfterAll);
                } else if !self.channels.iter().any(|c| c == rest) {
                    self.channels.push(rest.to_vec());
                }
                Ok(())
            }
            b'+' | b'-' => self.apply_command_rule(*first == b'+', rest, catalog),
            _ => Err(RuleError::Syntax),
        }
    }

    fn add_password(&mut self, h: [u8; 32]) {
        if !self.passwords.iter().any(|p| same_hash(p, &h)) {
            self.passwords.push(h);
        }
        self.nopass = false;
    }

    fn add_key(&mut self, pattern: &[u8], access: KeyAccess) -> Result<(), RuleError> {
        if pattern.is_empty() || !valid_pattern(pattern) {
            return Err(RuleError::Syntax);
        }
        if self.all_keys {
            return Err(RuleError::KeyAfterAll);
        }
        if pattern == b"*" && access == KeyAccess::ReadWrite {
            self.all_keys = true;
            self.keys.clear();
            return Ok(());
        }
        let new = KeyPattern {
            pattern: pattern.to_vec(),
            access,
        };
        if !self.keys.contains(&new) {
            self.keys.push(new);
        }
        Ok(())
    }

    fn set_all(&mut self, allowed: bool) {
        let fill = if allowed { u64::MAX } else { 0 };
        self.commands.iter_mut().for_each(|w| *w = fill);
        self.command_rules = vec![if allowed { "+@all" } else { "-@all" }.to_string()];
    }

    fn set(&mut self, id: usize, allowed: bool) {
        if let Some(w) = self.commands.get_mut(id / 64) {
            if allowed {
                *w |= 1 << (id % 64);
            } else {
                *w &= !(1 << (id % 64));
            }
        }
    }

    fn apply_command_rule(
        &mut self,
        allow: bool,
        name: &[u8],
        catalog: &Catalog,
    ) -> Result<(), RuleError> {
        let sign = if allow { '+' } else { '-' };
        if let Some(cat) = name.strip_prefix(b"@") {
            let category = Category::from_name(cat).ok_or(RuleError::UnknownCommand)?;
            let ids: Vec<usize> = catalog.in_category(category).collect();
            for id in ids {
                self.set(id, allow);
            }
            self.command_rules
                .push(format!("{sign}@{}", category.name()));
            return Ok(());
        }
        let id = catalog.find(name).ok_or(RuleError::UnknownCommand)?;
        let entry = catalog.entry(id).ok_or(RuleError::UnknownCommand)?;
        let subs = entry.subs.clone();
        let full = entry.name.clone();
        self.set(id, allow);
        for sub in subs {
            self.set(sub, allow);
        }
        self.command_rules.push(format!("{sign}{full}"));
        Ok(())
    }

    /// Whether `password` signs this user in (an `off` user signs in with none).
    pub fn check_password(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = hash_password(password);
        // Every stored hash is compared, whichever matches: the time does not say which.
        self.passwords
            .iter()
            .fold(false, |found, p| same_hash(p, &h) | found)
    }

    /// Whether the user may run the command or subcommand `id`.
    #[inline]
    pub fn may_run(&self, id: usize) -> bool {
        self.commands
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Whether every key is allowed (no pattern needs matching).
    #[inline]
    pub fn all_keys(&self) -> bool {
        self.all_keys
    }

    /// Whether the user may touch `key` for reading (`write` false) or writing.
    pub fn may_access(&self, key: &[u8], write: bool) -> bool {
        self.all_keys
            || self.keys.iter().any(|k| {
                let allowed = match k.access {
                    KeyAccess::ReadWrite => true,
                    KeyAccess::Read => !write,
                    KeyAccess::Write => write,
                };
                allowed && glob_match(&k.pattern, key)
            })
    }

    /// Whether the user may use `channel`: a channel name matched against the patterns, or,
    /// `literal`, a PSUBSCRIBE pattern that must be one of them as written.
    pub fn may_use_channel(&self, channel: &[u8], literal: bool) -> bool {
        self.all_channels
            || self.channels.iter().any(|p| {
                if literal {
                    p[..] == *channel
                } else {
                    glob_match(p, channel)
                }
            })
    }

    /// The SHA-256 of each password, in hex (ACL GETUSER's `passwords`).
    pub fn password_hashes(&self) -> Vec<String> {
        self.passwords.iter().map(hex).collect()
    }

    /// The flags ACL GETUSER lists.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut out = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            out.push("nopass");
        }
        out
    }

    /// The command rules, space-separated (`+@all -flushall`).
    pub fn command_text(&self) -> String {
        self.command_rules.join(" ")
    }

    /// The key rules, space-separated (`~*`, `~a:* %R~b:*`), empty with no key.
    pub fn keys_text(&self) -> String {
        if self.all_keys {
            return "~*".to_string();
        }
        self.keys
            .iter()
            .map(|k| {
                let prefix = match k.access {
                    KeyAccess::ReadWrite => "~",
                    KeyAccess::Read => "%R~",
                    KeyAccess::Write => "%W~",
                };
                format!("{prefix}{}", String::from_utf8_lossy(&k.pattern))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The channel rules, space-separated (`&*`, `&news:*`), empty with no channel.
    pub fn channels_text(&self) -> String {
        if self.all_channels {
            return "&*".to_string();
        }
        self.channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The rules that rebuild this user from nothing, passwords as hashes: what the limits log
    /// and the replication stream carry (`reset on #… ~… &… +@…`), and ACL SAVE writes.
    pub fn rules(&self) -> Vec<String> {
        let mut out = vec!["reset".to_string()];
        out.extend(self.flags().into_iter().map(str::to_string));
        out.extend(self.passwords.iter().map(|h| format!("#{}", hex(h))));
        let keys = self.keys_text();
        out.extend(
            keys.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        let channels = self.channels_text();
        if channels.is_empty() {
            out.push("resetchannels".to_string());
        } else {
            out.extend(channels.split(' ').map(str::to_string));
        }
        out.extend(self.command_rules.iter().cloned());
        out
    }

    /// One ACL LIST line: `user <name> <rules without reset>`.
    pub fn describe(&self) -> String {
        let rules = self.rules();
        format!("user {} {}", self.name, rules[1..].join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::Described;
    use super::super::category::Categories;
    use super::*;

    fn catalog() -> Catalog {
        use Category::*;
        Catalog::new(&[
            Described {
                name: "get",
                categories: Categories::of(&[Read, String, Fast]),
                subs: vec![],
            },
            Described {
                name: "rl.check",
                categories: Categories::of(&[RateLimit, Write, Fast]),
                subs: vec![],
            },
            Described {
                name: "flushall",
                categories: Categories::of(&[Keyspace, Write, Dangerous]),
                subs: vec![],
            },
            Described {
                name: "config",
                categories: Categories::NONE,
                subs: vec![
                    ("get", Categories::of(&[Admin, Slow])),
                    ("set", Categories::of(&[Admin, Slow, Dangerous])),
                ],
            },
        ])
    }

    fn user(rules: &[&str]) -> User {
        let c = catalog();
        let mut u = User::new("u", &c);
        for r in rules {
            assert_eq!(u.apply(r.as_bytes(), &c), Ok(()), "{r}");
        }
        u
    }

    #[test]
    fn commands_categories_and_subcommands() {
        let c = catalog();
        let u = user(&["+@rate_limit", "+get"]);
        assert!(u.may_run(c.find(b"rl.check").unwrap_or(99)));
        assert!(u.may_run(0));
        assert!(!u.may_run(c.find(b"flushall").unwrap_or(99)));
        let u = user(&["+@all", "-config|set"]);
        assert!(u.may_run(c.find(b"config|get").unwrap_or(99)));
        assert!(!u.may_run(c.find(b"config|set").unwrap_or(99)));
        assert_eq!(u.command_text(), "+@all -config|set");
        let u = user(&["+config"]);
        assert!(
            u.may_run(c.find(b"config|set").unwrap_or(99)),
            "a container brings its subcommands"
        );
        let u = user(&["+@all", "-@all", "+get"]);
        assert_eq!(u.command_text(), "-@all +get");
        let mut u = user(&[]);
        assert_eq!(u.apply(b"+nope", &c), Err(RuleError::UnknownCommand));
        assert_eq!(u.apply(b"+@nope", &c), Err(RuleError::UnknownCommand));
        assert_eq!(u.apply(b"bogus", &c), Err(RuleError::Syntax));
    }

    #[test]
    fn passwords_are_hashes_and_off_users_cannot_sign_in() {
        let c = catalog();
        let mut u = user(&["on", ">secret"]);
        assert!(u.check_password(b"secret"));
        assert!(!u.check_password(b"Secret"));
        let h = u.password_hashes()[0].clone();
        assert_eq!(h.len(), 64);
        assert_eq!(u.apply(format!("!{h}").as_bytes(), &c), Ok(()));
        assert!(!u.check_password(b"secret"));
        assert_eq!(u.apply(b"<secret", &c), Err(RuleError::NoSuchPassword));
        assert_eq!(u.apply(b"#XYZ", &c), Err(RuleError::BadHash));
        assert_eq!(u.apply(format!("#{h}").as_bytes(), &c), Ok(()));
        assert!(
            u.check_password(b"secret"),
            "a hash signs in with its password"
        );
        assert_eq!(u.apply(b"off", &c), Ok(()));
        assert!(!u.check_password(b"secret"));
        let u = user(&["on", "nopass"]);
        assert!(u.check_password(b"anything"));
    }

    #[test]
    fn key_and_channel_patterns() {
        let c = catalog();
        let u = user(&["~tenant1:*", "%R~shared:*"]);
        assert!(u.may_access(b"tenant1:alice", true));
        assert!(!u.may_access(b"tenant2:bob", false));
        assert!(u.may_access(b"shared:x", false));
        assert!(!u.may_access(b"shared:x", true), "read-only pattern");
        let mut u = user(&["allkeys"]);
        assert_eq!(u.apply(b"~x", &c), Err(RuleError::KeyAfterAll));
        assert_eq!(u.apply(b"~a b", &c), Err(RuleError::Syntax));
        let u = user(&["&news:*"]);
        assert!(u.may_use_channel(b"news:today", false));
        assert!(
            !u.may_use_channel(b"news:*x", true),
            "PSUBSCRIBE must name an allowed pattern"
        );
        assert!(u.may_use_channel(b"news:*", true));
        assert!(!u.may_use_channel(b"other", false));
    }

    #[test]
    fn rules_rebuild_the_user_and_describe_it_as_redis_does() {
        let c = catalog();
        let u = user(&["on", ">pw", "~a:*", "&*", "+@rate_limit", "-get"]);
        let mut rebuilt = User::new("u", &c);
        for r in u.rules() {
            assert_eq!(rebuilt.apply(r.as_bytes(), &c), Ok(()), "{r}");
        }
        assert_eq!(rebuilt, u);
        assert!(u.describe().starts_with("user u on #"), "{}", u.describe());
        assert!(
            u.describe().ends_with(" ~a:* &* -@all +@rate_limit -get"),
            "{}",
            u.describe()
        );
        let d = User::default_user(&c);
        assert_eq!(d.describe(), "user default on nopass ~* &* +@all");
        let fresh = User::new("n", &c);
        assert_eq!(fresh.describe(), "user n off resetchannels -@all");
    }
}
