//! What an ACL rule can name: every command and subcommand, each with a flat id (the bit of
//! a user's command set), its full name (`config|get`) and its categories.
//!
//! Built once at start from the command table, which sits above this module: the table's
//! rows are handed in, in their order, so a top-level command's id is its row's index (the
//! counters' slot too) and subcommands take the ids after the last row.

use super::category::{Categories, Category};
use std::collections::HashMap;

/// One command or subcommand.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Lowercase; `container|sub` for a subcommand.
    pub name: String,
    pub categories: Categories,
    /// The container of a subcommand.
    pub parent: Option<usize>,
    /// The ids of a container's subcommands, in the table's order.
    pub subs: Vec<usize>,
}

/// A command handed to [`Catalog::new`]: its name, its categories and its subcommands'.
pub struct Described<'a> {
    pub name: &'a str,
    pub categories: Categories,
    pub subs: Vec<(&'a str, Categories)>,
}

/// Every command and subcommand, by id and by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// The catalog of `commands`, given in the command table's order.
    pub fn new(commands: &[Described<'_>]) -> Catalog {
        let mut entries: Vec<Entry> = commands
            .iter()
            .map(|c| Entry {
                name: c.name.to_ascii_lowercase(),
                categories: c.categories,
                parent: None,
                subs: Vec::new(),
            })
            .collect();
        for (row, c) in commands.iter().enumerate() {
            for (sub, categories) in &c.subs {
                let id = entries.len();
                entries.push(Entry {
                    name: format!("{}|{}", c.name, sub).to_ascii_lowercase(),
                    categories: *categories,
                    parent: Some(row),
                    subs: Vec::new(),
                });
                entries[row].subs.push(id);
            }
        }
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Catalog { entries, by_name }
    }

    /// How many ids there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, id: usize) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// The id of `name` (`get`, `config|get`), ASCII case-insensitively.
    pub fn find(&self, name: &[u8]) -> Option<usize> {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        self.by_name.get(&name).copied()
    }

    /// The id of the `pos`-th subcommand of the top-level command `row`.
    pub fn sub_id(&self, row: usize, pos: usize) -> Option<usize> {
        self.entries.get(row)?.subs.get(pos).copied()
    }

    /// Every command and subcommand in a category (containers themselves have none: their
    /// subcommands do).
    pub fn in_category(&self, category: Category) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.categories.has(category))
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_index_and_subcommands_follow() {
        let c = Catalog::new(&[
            Described {
                name: "get",
                categories: Categories::of(&[Category::Read]),
                subs: vec![],
            },
            Described {
                name: "config",
                categories: Categories::NONE,
                subs: vec![
                    ("get", Categories::of(&[Category::Admin])),
                    ("set", Categories::of(&[Category::Admin])),
                ],
            },
        ]);
        assert_eq!(c.len(), 4);
        assert_eq!(c.find(b"GET"), Some(0));
        assert_eq!(c.find(b"config"), Some(1));
        assert_eq!(c.find(b"Config|Set"), Some(3));
        assert_eq!(c.sub_id(1, 0), Some(2));
        assert_eq!(c.entry(3).and_then(|e| e.parent), Some(1));
        assert_eq!(
            c.in_category(Category::Admin).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(c.find(b"nope"), None);
    }
}
