//! The registry of users every listener authenticates against, and the ACL LOG of refusals.
//!
//! Reads (a connection taking its user again after a change) are rare and cheap: a change
//! replaces the changed user's `Arc` and bumps the generation, which a connection compares
//! with the one it took its user at, once per command.

use super::catalog::Catalog;
use super::user::{RuleError, User};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The entries ACL LOG keeps (Redis's `acllog-max-len` default).
pub const LOG_MAX: usize = 128;

/// Redis's answer to a wrong user or password.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Why AUTH failed; `Display` is the error line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{WRONGPASS}")]
    WrongPass,
    /// `AUTH <password>` while the default user needs none (Redis 6+'s text).
    #[error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")]
    NoPasswordConfigured,
}

/// Why ACL SETUSER / DELUSER refused; `Display` is the error line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetUserError {
    #[error("ERR Usernames can't contain spaces or null characters")]
    BadName,
    #[error("ERR Error in ACL SETUSER modifier '{0}': {1}")]
    Rule(String, RuleError),
    #[error("ERR The 'default' user cannot be removed")]
    DefaultUser,
}

/// What a refusal was about (ACL LOG's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogReason {
    Command,
    Key,
    Channel,
    Auth,
}

impl LogReason {
    pub fn name(self) -> &'static str {
        match self {
            LogReason::Command => "command",
            LogReason::Key => "key",
            LogReason::Channel => "channel",
            LogReason::Auth => "auth",
        }
    }
}

/// One ACL LOG entry: similar refusals within 60 s are counted in one.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub count: u64,
    pub reason: LogReason,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    /// The command, key or channel refused, or the user name of a failed AUTH.
    pub object: String,
    pub username: String,
    pub created: Instant,
    pub updated: Instant,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
    pub client_info: String,
    pub entry_id: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every user, the refusals log, and the catalog the rules name commands in.
pub struct Users {
    catalog: Catalog,
    users: RwLock<BTreeMap<String, Arc<User>>>,
    generation: AtomicU64,
    /// The default user is `on` and `nopass`: connections need not authenticate.
    default_open: AtomicBool,
    log: Mutex<VecDeque<LogEntry>>,
    next_entry: AtomicU64,
    /// Held across a change's build, log and store, so that two changes to one user cannot
    /// both start from the state before the other.
    changing: Mutex<()>,
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.iter().any(|c| c.is_ascii_whitespace() || *c == 0)
}

impl Users {
    /// The registry with the default user alone (`on nopass ~* &* +@all`).
    pub fn new(catalog: Catalog) -> Users {
        let default = Arc::new(User::default_user(&catalog));
        let mut map = BTreeMap::new();
        map.insert("default".to_string(), default);
        Users {
            catalog,
            users: RwLock::new(map),
            generation: AtomicU64::new(0),
            default_open: AtomicBool::new(true),
            log: Mutex::new(VecDeque::new()),
            next_entry: AtomicU64::new(0),
            changing: Mutex::new(()),
        }
    }

    /// Serialise changes: hold this across [`Users::build`] and [`Users::put`].
    pub fn lock_changes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Bumped by every change; a connection takes its user again when it moved.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// True while the default user is `on` and `nopass`: a connection is signed in as it
    /// without AUTH (and, where listeners are not exposed, protected mode applies).
    #[inline]
    pub fn default_open(&self) -> bool {
        self.default_open.load(Ordering::Relaxed)
    }

    /// The user named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The default user.
    pub fn default_user(&self) -> Arc<User> {
        self.get("default")
            .unwrap_or_else(|| Arc::new(User::default_user(&self.catalog)))
    }

    /// Every user, by name.
    pub fn all(&self) -> Vec<Arc<User>> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Sign in as `name` (None: `default`, the one-argument AUTH) with `password`.
    pub fn authenticate(
        &self,
        name: Option<&[u8]>,
        password: &[u8],
    ) -> Result<Arc<User>, AuthError> {
        let user = self.get(&String::from_utf8_lossy(name.unwrap_or(b"default")));
        match user {
            Some(u) if name.is_none() && u.nopass && u.enabled => {
                Err(AuthError::NoPasswordConfigured)
            }
            Some(u) if u.check_password(password) => Ok(u),
            _ => Err(AuthError::WrongPass),
        }
    }

    /// ACL SETUSER: apply `rules` to the user `name` (created if new) all or nothing, and
    /// return the user as it now is.
    pub fn set_user(&self, name: &[u8], rules: &[&[u8]]) -> Result<Arc<User>, SetUserError> {
        let user = self.build(name, rules)?;
        Ok(self.put(user))
    }

    /// The user `name` (a new one if absent) with `rules` applied, not stored yet: a change
    /// is validated whole, logged as the rules that rebuild the result, then stored.
    pub fn build(&self, name: &[u8], rules: &[&[u8]]) -> Result<User, SetUserError> {
        if !valid_name(name) {
            return Err(SetUserError::BadName);
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let mut user = match self.get(&name) {
            Some(u) => User::clone(&u),
            None => User::new(&name, &self.catalog),
        };
        for rule in rules {
            user.apply(rule, &self.catalog)
                .map_err(|e| SetUserError::Rule(crate::text::shorten(rule, 128), e))?;
        }
        Ok(user)
    }

    /// Store a user built by [`Users::build`], replacing the one of its name.
    pub fn put(&self, user: User) -> Arc<User> {
        let user = Arc::new(user);
        let mut map = self.users.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(user.name.clone(), user.clone());
        self.changed(&map);
        user
    }

    /// ACL DELUSER of one user: whether it existed.
    pub fn del_user(&self, name: &[u8]) -> Result<bool, SetUserError> {
        if name == b"default" {
            return Err(SetUserError::DefaultUser);
        }
        let mut map = self.users.write().unwrap_or_else(PoisonError::into_inner);
        let removed = map.remove(&*String::from_utf8_lossy(name)).is_some();
        if removed {
            self.changed(&map);
        }
        Ok(removed)
    }

    fn changed(&self, map: &BTreeMap<String, Arc<User>>) {
        let open = map.get("default").is_some_and(|d| d.enabled && d.nopass);
        self.default_open.store(open, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Record a refusal in ACL LOG: a refusal like one logged in the last 60 s counts there.
    pub fn log(
        &self,
        reason: LogReason,
        context: &'static str,
        object: &str,
        username: &str,
        client_info: String,
    ) {
        let now = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = log.iter_mut().find(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now.duration_since(e.updated).as_secs() < 60
        }) {
            e.count += 1;
            e.updated = now;
            e.updated_unix_ms = unix_ms();
            e.client_info = client_info;
            return;
        }
        let ms = unix_ms();
        log.push_front(LogEntry {
            count: 1,
            reason,
            context,
            object: object.to_string(),
            username: username.to_string(),
            created: now,
            updated: now,
            created_unix_ms: ms,
            updated_unix_ms: ms,
            client_info,
            entry_id: self.next_entry.fetch_add(1, Ordering::Relaxed),
        });
        log.truncate(LOG_MAX);
    }

    /// The newest `count` ACL LOG entries.
    pub fn log_entries(&self, count: usize) -> Vec<LogEntry> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().take(count).cloned().collect()
    }

    /// ACL LOG RESET.
    pub fn log_reset(&self) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::Described;
    use super::super::category::{Categories, Category};
    use super::*;

    fn users() -> Users {
        Users::new(Catalog::new(&[Described {
            name: "get",
            categories: Categories::of(&[Category::Read]),
            subs: vec![],
        }]))
    }

    #[test]
    fn the_default_user_is_open_until_it_gets_a_password() {
        let u = users();
        assert!(u.default_open());
        assert_eq!(
            u.authenticate(None, b"x").err(),
            Some(AuthError::NoPasswordConfigured)
        );
        assert!(u.authenticate(Some(b"default"), b"anything").is_ok());
        let g = u.generation();
        assert!(u.set_user(b"default", &[b">pw"]).is_ok());
        assert!(u.generation() > g);
        assert!(!u.default_open());
        assert!(u.authenticate(None, b"pw").is_ok());
        assert_eq!(
            u.authenticate(None, b"no").err(),
            Some(AuthError::WrongPass)
        );
        assert_eq!(
            u.authenticate(Some(b"ghost"), b"pw").err(),
            Some(AuthError::WrongPass)
        );
    }

    #[test]
    fn setuser_is_all_or_nothing_and_default_cannot_go() {
        let u = users();
        let err = u.set_user(b"alice", &[b"on", b"+nope"]).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(
                "ERR Error in ACL SETUSER modifier '+nope': Unknown command or category name in ACL"
                    .to_string()
            )
        );
        assert!(u.get("alice").is_none(), "nothing applied");
        assert_eq!(u.set_user(b"a b", &[]).err(), Some(SetUserError::BadName));
        assert!(u.set_user(b"alice", &[b"on", b">pw", b"+get"]).is_ok());
        assert!(u.authenticate(Some(b"alice"), b"pw").is_ok());
        assert_eq!(u.del_user(b"alice"), Ok(true));
        assert_eq!(u.del_user(b"alice"), Ok(false));
        assert_eq!(u.del_user(b"default"), Err(SetUserError::DefaultUser));
    }

    #[test]
    fn the_log_groups_like_refusals_and_is_bounded() {
        let u = users();
        for _ in 0..3 {
            u.log(
                LogReason::Command,
                "toplevel",
                "flushall",
                "alice",
                "id=1".into(),
            );
        }
        u.log(LogReason::Key, "toplevel", "k", "alice", "id=1".into());
        let e = u.log_entries(10);
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].count, e[1].object.as_str()), (3, "flushall"));
        for i in 0..(LOG_MAX + 10) {
            u.log(
                LogReason::Auth,
                "toplevel",
                &i.to_string(),
                "x",
                String::new(),
            );
        }
        assert_eq!(u.log_entries(usize::MAX).len(), LOG_MAX);
        u.log_reset();
        assert!(u.log_entries(10).is_empty());
    }
}
