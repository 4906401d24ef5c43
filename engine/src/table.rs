//! The limits-and-tiers table and precedence resolution.
//!
//! The table is configuration: read on every check, written rarely. So it is an immutable
//! value that the engine publishes through crossbeam-epoch (see `lib.rs`): a check pins,
//! loads and reads without any lock, and a writer clones, edits and swaps. The sub-maps sit
//! behind `Arc` so that an edit clones only the map it touches (a tier assignment does not
//! copy any limit map).
//!
//! Resolution never scans patterns: each level keeps exact patterns in a hash map and prefix
//! patterns in another, keyed by their stem, plus the distinct stem lengths (longest first) to
//! probe — so a lookup costs one probe per distinct prefix length, not one per pattern.

use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::limit::{EndpointPattern, Limit, Scope};

type Map<K, V> = HashMap<K, V, Xxh3DefaultBuilder>;

/// Client id -> tier name.
type TierAssignments = Map<Box<[u8]>, Box<[u8]>>;

/// The endpoint-pattern limits of one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct PatternSet {
    exact: Map<Box<[u8]>, (EndpointPattern, Limit)>,
    prefix: Map<Box<[u8]>, (EndpointPattern, Limit)>,
    /// Distinct stem lengths present in `prefix`, longest first.
    prefix_lens: Vec<usize>,
}

impl PatternSet {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty()
    }

    /// Exact match first, then the longest matching prefix.
    fn lookup(&self, endpoint: &[u8]) -> Option<&(EndpointPattern, Limit)> {
        if let Some(hit) = self.exact.get(endpoint) {
            return Some(hit);
        }
        self.prefix_lens
            .iter()
            .filter(|&&len| len <= endpoint.len())
            .find_map(|&len| self.prefix.get(&endpoint[..len]))
    }

    fn get(&self, p: &EndpointPattern) -> Option<&Limit> {
        self.side(p).get(p.stem()).map(|(_, l)| l)
    }

    fn side(&self, p: &EndpointPattern) -> &Map<Box<[u8]>, (EndpointPattern, Limit)> {
        if p.is_prefix() {
            &self.prefix
        } else {
            &self.exact
        }
    }

    fn insert(&mut self, p: EndpointPattern, limit: Limit) {
        let stem: Box<[u8]> = p.stem().into();
        if p.is_prefix() {
            let len = stem.len();
            self.prefix.insert(stem, (p, limit));
            if !self.prefix_lens.contains(&len) {
                self.prefix_lens.push(len);
                self.prefix_lens.sort_unstable_by(|a, b| b.cmp(a));
            }
        } else {
            self.exact.insert(stem, (p, limit));
        }
    }

    fn remove(&mut self, p: &EndpointPattern) -> bool {
        if p.is_prefix() {
            let removed = self.prefix.remove(p.stem()).is_some();
            if removed && !self.prefix.keys().any(|k| k.len() == p.stem().len()) {
                self.prefix_lens.retain(|&l| l != p.stem().len());
            }
            removed
        } else {
            self.exact.remove(p.stem()).is_some()
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(EndpointPattern, Limit)> {
        self.exact.values().chain(self.prefix.values())
    }
}

/// The limits of one client or one tier: without an endpoint, and per endpoint pattern.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scoped {
    plain: Option<Limit>,
    endpoints: PatternSet,
}

impl Scoped {
    fn is_empty(&self) -> bool {
        self.plain.is_none() && self.endpoints.is_empty()
    }

    fn get(&self, endpoint: &Option<EndpointPattern>) -> Option<&Limit> {
        match endpoint {
            None => self.plain.as_ref(),
            Some(p) => self.endpoints.get(p),
        }
    }

    fn set(&mut self, endpoint: Option<EndpointPattern>, limit: Limit) {
        match endpoint {
            None => self.plain = Some(limit),
            Some(p) => self.endpoints.insert(p, limit),
        }
    }

    fn remove(&mut self, endpoint: &Option<EndpointPattern>) -> bool {
        match endpoint {
            None => self.plain.take().is_some(),
            Some(p) => self.endpoints.remove(p),
        }
    }
}

/// Which precedence level a resolved limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level<'a> {
    ClientEndpoint(&'a EndpointPattern),
    Client,
    TierEndpoint(&'a [u8], &'a EndpointPattern),
    Tier(&'a [u8]),
    Endpoint(&'a EndpointPattern),
    Default,
}

/// The limit that applies to a (client, endpoint), borrowed from a table snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'a> {
    pub limit: &'a Limit,
    pub level: Level<'a>,
}

impl Resolved<'_> {
    /// The level, without ids.
    pub fn kind(&self) -> crate::ScopeKind {
        match self.level {
            Level::ClientEndpoint(_) => crate::ScopeKind::ClientEndpoint,
            Level::Client => crate::ScopeKind::Client,
            Level::TierEndpoint(..) => crate::ScopeKind::TierEndpoint,
            Level::Tier(_) => crate::ScopeKind::Tier,
            Level::Endpoint(_) => crate::ScopeKind::Endpoint,
            Level::Default => crate::ScopeKind::Default,
        }
    }

    /// The configured scope this limit came from (allocates; RL.EXPLAIN only).
    pub fn scope(&self, client: &[u8]) -> Scope {
        match self.level {
            Level::ClientEndpoint(p) => Scope::Client {
                id: client.to_vec(),
                endpoint: Some(p.clone()),
            },
            Level::Client => Scope::Client {
                id: client.to_vec(),
                endpoint: None,
            },
            Level::TierEndpoint(t, p) => Scope::Tier {
                name: t.to_vec(),
                endpoint: Some(p.clone()),
            },
            Level::Tier(t) => Scope::Tier {
                name: t.to_vec(),
                endpoint: None,
            },
            Level::Endpoint(p) => Scope::Endpoint(p.clone()),
            Level::Default => Scope::Default,
        }
    }
}

/// One immutable snapshot of the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    default: Option<Limit>,
    clients: Arc<Map<Box<[u8]>, Scoped>>,
    tiers: Arc<Map<Box<[u8]>, Scoped>>,
    endpoints: Arc<PatternSet>,
    client_tiers: Arc<TierAssignments>,
}

impl Table {
    /// Precedence: client+endpoint > client > tier+endpoint > tier > endpoint > default.
    ///
    /// Inlined into every check, with a shortcut for a configuration without per-client or
    /// per-tier limits (a default, perhaps endpoint limits): the two client lookups could only
    /// find nothing there, and going through the general lookup's large frame for them was
    /// about a tenth of a check's instructions (56 of ~500, callgrind at 1k keys).
    #[inline(always)]
    pub fn resolve(&self, client: &[u8], endpoint: &[u8]) -> Option<Resolved<'_>> {
        if self.clients.is_empty() && self.client_tiers.is_empty() {
            self.resolve_shared(endpoint)
        } else {
            self.resolve_any(client, endpoint)
        }
    }

    /// The endpoint's limit, else the default: what [`Table::resolve`] finds when no client
    /// or tier has a limit of its own.
    #[inline(always)]
    fn resolve_shared(&self, endpoint: &[u8]) -> Option<Resolved<'_>> {
        if !self.endpoints.is_empty() {
            if let Some((p, limit)) = self.endpoints.lookup(endpoint) {
                return Some(Resolved {
                    limit,
                    level: Level::Endpoint(p),
                });
            }
        }
        self.default.as_ref().map(|limit| Resolved {
            limit,
            level: Level::Default,
        })
    }

    #[inline(never)]
    fn resolve_any(&self, client: &[u8], endpoint: &[u8]) -> Option<Resolved<'_>> {
        if let Some(c) = self.clients.get(client) {
            if let Some((p, limit)) = c.endpoints.lookup(endpoint) {
                return Some(Resolved {
                    limit,
                    level: Level::ClientEndpoint(p),
                });
            }
            if let Some(limit) = &c.plain {
                return Some(Resolved {
                    limit,
                    level: Level::Client,
                });
            }
        }
        if let Some(tier) = self.client_tiers.get(client) {
            if let Some(t) = self.tiers.get(tier) {
                if let Some((p, limit)) = t.endpoints.lookup(endpoint) {
                    return Some(Resolved {
                        limit,
                        level: Level::TierEndpoint(tier, p),
                    });
                }
                if let Some(limit) = &t.plain {
                    return Some(Resolved {
                        limit,
                        level: Level::Tier(tier),
                    });
                }
            }
        }
        self.resolve_shared(endpoint)
    }

    pub fn get_limit(&self, scope: &Scope) -> Option<&Limit> {
        match scope {
            Scope::Default => self.default.as_ref(),
            Scope::Client { id, endpoint } => self
                .clients
                .get(id.as_slice())
                .and_then(|c| c.get(endpoint)),
            Scope::Tier { name, endpoint } => self
                .tiers
                .get(name.as_slice())
                .and_then(|t| t.get(endpoint)),
            Scope::Endpoint(p) => self.endpoints.get(p),
        }
    }

    pub fn set_limit(&mut self, scope: Scope, limit: Limit) {
        match scope {
            Scope::Default => self.default = Some(limit),
            Scope::Client { id, endpoint } => Arc::make_mut(&mut self.clients)
                .entry(id.into_boxed_slice())
                .or_default()
                .set(endpoint, limit),
            Scope::Tier { name, endpoint } => Arc::make_mut(&mut self.tiers)
                .entry(name.into_boxed_slice())
                .or_default()
                .set(endpoint, limit),
            Scope::Endpoint(p) => Arc::make_mut(&mut self.endpoints).insert(p, limit),
        }
    }

    /// True if the scope had a limit. Emptied client/tier entries are dropped so the map
    /// only holds configured names.
    pub fn del_limit(&mut self, scope: &Scope) -> bool {
        fn del_scoped(
            map: &mut Arc<Map<Box<[u8]>, Scoped>>,
            name: &[u8],
            endpoint: &Option<EndpointPattern>,
        ) -> bool {
            if map.get(name).and_then(|s| s.get(endpoint)).is_none() {
                return false; // Nothing to do: do not clone the map.
            }
            let map = Arc::make_mut(map);
            let (removed, now_empty) = match map.get_mut(name) {
                Some(s) => (s.remove(endpoint), s.is_empty()),
                None => (false, false),
            };
            if now_empty {
                map.remove(name);
            }
            removed
        }
        match scope {
            Scope::Default => self.default.take().is_some(),
            Scope::Client { id, endpoint } => del_scoped(&mut self.clients, id, endpoint),
            Scope::Tier { name, endpoint } => del_scoped(&mut self.tiers, name, endpoint),
            Scope::Endpoint(p) => {
                self.endpoints.get(p).is_some() && Arc::make_mut(&mut self.endpoints).remove(p)
            }
        }
    }

    /// All limits, sorted by scope (Default, clients, tiers, endpoints, each by name).
    /// Every limit, in no order, without copying (for [`crate::shape::Shapes::intern`]'s
    /// walk over the shape ids in use).
    pub fn for_each_limit(&self, mut f: impl FnMut(&Limit)) {
        if let Some(l) = &self.default {
            f(l);
        }
        for s in self.clients.values().chain(self.tiers.values()) {
            if let Some(l) = &s.plain {
                f(l);
            }
            for (_, l) in s.endpoints.iter() {
                f(l);
            }
        }
        for (_, l) in self.endpoints.iter() {
            f(l);
        }
    }

    pub fn list(&self) -> Vec<(Scope, Limit)> {
        let mut out = Vec::new();
        if let Some(l) = &self.default {
            out.push((Scope::Default, l.clone()));
        }
        let scoped = |out: &mut Vec<(Scope, Limit)>,
                      map: &Map<Box<[u8]>, Scoped>,
                      make: fn(Vec<u8>, Option<EndpointPattern>) -> Scope| {
            for (name, s) in map {
                if let Some(l) = &s.plain {
                    out.push((make(name.to_vec(), None), l.clone()));
                }
                for (p, l) in s.endpoints.iter() {
                    out.push((make(name.to_vec(), Some(p.clone())), l.clone()));
                }
            }
        };
        scoped(&mut out, &self.clients, |id, endpoint| Scope::Client {
            id,
            endpoint,
        });
        scoped(&mut out, &self.tiers, |name, endpoint| Scope::Tier {
            name,
            endpoint,
        });
        for (p, l) in self.endpoints.iter() {
            out.push((Scope::Endpoint(p.clone()), l.clone()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every (client, tier) assignment, sorted by client.
    pub fn tiers(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = self
            .client_tiers
            .iter()
            .map(|(c, t)| (c.to_vec(), t.to_vec()))
            .collect();
        out.sort();
        out
    }

    pub fn tier_of(&self, client: &[u8]) -> Option<&[u8]> {
        self.client_tiers.get(client).map(|t| &**t)
    }

    pub fn set_tier(&mut self, client: &[u8], tier: &[u8]) {
        Arc::make_mut(&mut self.client_tiers).insert(client.into(), tier.into());
    }

    pub fn del_tier(&mut self, client: &[u8]) -> bool {
        self.client_tiers.contains_key(client)
            && Arc::make_mut(&mut self.client_tiers)
                .remove(client)
                .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Window;

    fn lim(n: u64) -> Limit {
        Limit::new(vec![Window::new(n, 1000, 0).expect("valid")]).expect("valid")
    }

    fn pat(s: &str) -> Option<EndpointPattern> {
        Some(EndpointPattern::new(s.as_bytes()).expect("valid"))
    }

    fn client(id: &str, ep: Option<&str>) -> Scope {
        Scope::Client {
            id: id.as_bytes().to_vec(),
            endpoint: ep.and_then(pat),
        }
    }

    fn tier(name: &str, ep: Option<&str>) -> Scope {
        Scope::Tier {
            name: name.as_bytes().to_vec(),
            endpoint: ep.and_then(pat),
        }
    }

    fn endpoint(ep: &str) -> Scope {
        Scope::Endpoint(EndpointPattern::new(ep.as_bytes()).expect("valid"))
    }

    /// Each configured scope gets a distinct count, so the resolved count names the winner.
    fn full_table() -> Table {
        let mut t = Table::default();
        let scopes = [
            (Scope::Default, 1),
            (endpoint("/api/*"), 2),
            (endpoint("/api/users/*"), 3),
            (endpoint("/api/users"), 4),
            (endpoint("*"), 5),
            (tier("gold", None), 6),
            (tier("gold", Some("/api/*")), 7),
            (tier("gold", Some("/api/x")), 8),
            (client("alice", None), 9),
            (client("alice", Some("/api/*")), 10),
            (client("alice", Some("/api/users")), 11),
            (client("carol", Some("/only")), 12),
            (tier("silver", Some("/s*")), 13),
        ];
        for (s, n) in scopes {
            t.set_limit(s, lim(n));
        }
        t.set_tier(b"alice", b"gold");
        t.set_tier(b"bob", b"gold");
        t.set_tier(b"carol", b"silver");
        t.set_tier(b"dave", b"nonexistent");
        t
    }

    #[test]
    fn precedence_table() {
        let t = full_table();
        let cases: &[(&str, &str, u64, &str)] = &[
            // client + endpoint: exact beats prefix
            (
                "alice",
                "/api/users",
                11,
                "CLIENT alice ENDPOINT /api/users",
            ),
            ("alice", "/api/other", 10, "CLIENT alice ENDPOINT /api/*"),
            // client without endpoint beats tier and endpoint levels
            ("alice", "/web", 9, "CLIENT alice"),
            // tier + endpoint: exact, then prefix, then plain tier
            ("bob", "/api/x", 8, "TIER gold ENDPOINT /api/x"),
            ("bob", "/api/users", 7, "TIER gold ENDPOINT /api/*"),
            ("bob", "/web", 6, "TIER gold"),
            // carol: client entry without a matching endpoint and no plain limit falls to tier
            ("carol", "/only", 12, "CLIENT carol ENDPOINT /only"),
            ("carol", "/sx", 13, "TIER silver ENDPOINT /s*"),
            // silver has no plain limit: falls to endpoint level (longest prefix "*")
            ("carol", "/web", 5, "ENDPOINT *"),
            // tier that has no limits at all
            ("dave", "/api/users", 4, "ENDPOINT /api/users"),
            // endpoint level: exact > longest prefix
            ("nobody", "/api/users", 4, "ENDPOINT /api/users"),
            ("nobody", "/api/users/7", 3, "ENDPOINT /api/users/*"),
            ("nobody", "/api/v", 2, "ENDPOINT /api/*"),
            ("nobody", "/x", 5, "ENDPOINT *"),
        ];
        for (c, e, want, scope) in cases {
            let r = t
                .resolve(c.as_bytes(), e.as_bytes())
                .expect("a limit applies");
            assert_eq!(r.limit.windows()[0].count(), *want, "{c} {e}");
            assert_eq!(r.scope(c.as_bytes()).to_string(), *scope, "{c} {e}");
        }
    }

    #[test]
    fn default_and_nothing() {
        let mut t = Table::default();
        assert!(t.resolve(b"a", b"/x").is_none());
        t.set_limit(Scope::Default, lim(1));
        let r = t.resolve(b"a", b"/x").expect("default");
        assert_eq!(r.level, Level::Default);
        t.set_limit(endpoint("/y"), lim(2));
        assert_eq!(
            t.resolve(b"a", b"/x").map(|r| r.level),
            Some(Level::Default)
        );
    }

    #[test]
    fn get_del_list() {
        let mut t = full_table();
        assert_eq!(
            t.get_limit(&client("alice", Some("/api/*"))),
            Some(&lim(10))
        );
        assert_eq!(t.get_limit(&client("alice", Some("/api/x"))), None);
        let listed: Vec<String> = t.list().iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(listed.len(), 13);
        assert_eq!(listed[0], "DEFAULT");
        assert_eq!(listed[1], "CLIENT alice");
        assert_eq!(
            listed.last().map(String::as_str),
            Some("ENDPOINT /api/users/*")
        );
        let mut sorted = t.list();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sorted, t.list());

        assert!(t.del_limit(&endpoint("/api/users/*")));
        assert!(!t.del_limit(&endpoint("/api/users/*")));
        assert_eq!(
            t.resolve(b"nobody", b"/api/users/7")
                .map(|r| r.limit.windows()[0].count()),
            Some(2)
        );
        assert!(t.del_limit(&client("carol", Some("/only"))));
        assert!(
            t.clients.get(&b"carol"[..]).is_none(),
            "emptied entries are dropped"
        );
        assert!(t.del_limit(&Scope::Default));
        assert!(!t.del_limit(&Scope::Default));
        assert!(t.del_tier(b"bob"));
        assert!(!t.del_tier(b"bob"));
        assert_eq!(t.tier_of(b"alice"), Some(&b"gold"[..]));
    }

    #[test]
    fn tier_change_shares_limit_maps() {
        let mut t = full_table();
        let before = t.clone();
        t.set_tier(b"erin", b"gold");
        assert!(Arc::ptr_eq(&t.clients, &before.clients));
        assert!(Arc::ptr_eq(&t.tiers, &before.tiers));
        assert!(!Arc::ptr_eq(&t.client_tiers, &before.client_tiers));
    }
}
