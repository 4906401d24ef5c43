//! ACL command categories: Redis's, and two of ours.
//!
//! `@rate_limit` holds the checks (RL.CHECK, RL.PEEK, RL.EXPLAIN, CL.THROTTLE: Redis gave its
//! own GCRA command, CL.THROTTLE's model, that name), `@limits` what manages limits (RL.LIMIT,
//! RL.TIER, RL.RESET). A role that may only check is `+@rate_limit`.

/// One category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Keyspace,
    Read,
    Write,
    String,
    Pubsub,
    Admin,
    Fast,
    Slow,
    Dangerous,
    Connection,
    Transaction,
    RateLimit,
    Limits,
}

impl Category {
    /// Every category, in the order ACL CAT lists them.
    pub const ALL: [Category; 13] = [
        Category::Keyspace,
        Category::Read,
        Category::Write,
        Category::String,
        Category::Pubsub,
        Category::Admin,
        Category::Fast,
        Category::Slow,
        Category::Dangerous,
        Category::Connection,
        Category::Transaction,
        Category::RateLimit,
        Category::Limits,
    ];

    /// The name after `@`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Keyspace => "keyspace",
            Category::Read => "read",
            Category::Write => "write",
            Category::String => "string",
            Category::Pubsub => "pubsub",
            Category::Admin => "admin",
            Category::Fast => "fast",
            Category::Slow => "slow",
            Category::Dangerous => "dangerous",
            Category::Connection => "connection",
            Category::Transaction => "transaction",
            Category::RateLimit => "rate_limit",
            Category::Limits => "limits",
        }
    }

    /// The category named `name` (ASCII case-insensitively), if there is one.
    pub fn from_name(name: &[u8]) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// A set of categories; [`Categories::of`] builds one in a `static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Categories(u32);

impl Categories {
    pub const NONE: Categories = Categories(0);

    pub const fn of(list: &[Category]) -> Categories {
        let mut bits = 0;
        let mut i = 0;
        while i < list.len() {
            bits |= 1 << list[i] as u32;
            i += 1;
        }
        Categories(bits)
    }

    /// The set with `c` added.
    pub fn with(self, c: Category) -> Categories {
        Categories(self.0 | (1 << c as u32))
    }

    pub fn has(self, c: Category) -> bool {
        self.0 & (1 << c as u32) != 0
    }

    /// The categories in the set, in [`Category::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(move |c| self.has(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_what_they_were_given() {
        for c in Category::ALL {
            assert_eq!(Category::from_name(c.name().as_bytes()), Some(c));
        }
        assert_eq!(
            Category::from_name(b"RATE_LIMIT"),
            Some(Category::RateLimit)
        );
        assert_eq!(
            Category::from_name(b"all"),
            None,
            "@all is a rule, not a category"
        );
        let set = Categories::of(&[Category::Read, Category::Fast]);
        assert!(set.has(Category::Read) && set.has(Category::Fast));
        assert!(!set.has(Category::Write));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Category::Read, Category::Fast]
        );
    }
}
