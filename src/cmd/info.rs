//! INFO: the daemon described in Redis's sections and field names, because monitoring tools
//! and client libraries parse them; ratelimitd's own figures are added under `rl_*` names.

use super::connection::REDIS_COMPAT_VERSION;
use super::reply::text_reply;
use super::spec::Ctx;
use crate::repl::LinkState;
use crate::state::Shared;
use ratelimitd_protocol::{Parse, ParseError, Reply};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// INFO [section ...].
pub fn info(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    let mut sections = Vec::new();
    while let Some(s) = parse.try_next() {
        sections.push(String::from_utf8_lossy(s).to_ascii_lowercase());
    }
    Ok(text_reply(text(ctx.shared, &sections)))
}

fn human(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

/// The INFO text for the requested sections (none, "default", "all" or "everything": all).
fn text(shared: &Shared, requested: &[String]) -> String {
    const ALL: [&str; 8] = [
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "keyspace",
    ];
    let want = |name: &str| {
        requested.is_empty()
            || requested
                .iter()
                .any(|r| r == name || r == "all" || r == "default" || r == "everything")
    };
    let totals = shared.counters.info();
    let uptime = shared.started.elapsed().as_secs();
    let mut out = String::new();
    for section in ALL {
        if !want(section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => {
                let _ = write!(
                    out,
                    "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nratelimitd_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\ntls_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:{}\r\nconfig_file:\r\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    usize::BITS,
                    std::process::id(),
                    shared.run_id,
                    shared.ports.resp,
                    shared.ports.tls.unwrap_or(0),
                    uptime / 86_400,
                    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                );
            }
            "clients" => {
                let _ = write!(
                    out,
                    "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
                    shared.clients.len(),
                    shared.config.maxclients
                );
            }
            "memory" => {
                let used = shared.engine.memory_bytes();
                let rss = crate::process::rss_bytes();
                let (max_keys, maxmemory, policy) = shared.engine.bounds();
                let maxmemory = maxmemory.unwrap_or(0);
                let (arena_mapped, arena_used) = ratelimitd_engine::arena::usage();
                let _ = write!(
                    out,
                    "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nmaxmemory:{maxmemory}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmax_keys:{}\r\nmem_allocator:libc\r\nrl_huge_pages:{}\r\nrl_huge_page_arena_mapped:{arena_mapped}\r\nrl_huge_page_arena_used:{arena_used}\r\n",
                    human(used),
                    human(rss),
                    human(maxmemory),
                    policy.name(),
                    max_keys.unwrap_or(0),
                    if ratelimitd_engine::arena::enabled() { "yes" } else { "no" },
                );
            }
            "stats" => {
                let engine_stats = shared.engine.stats();
                let _ = write!(
                    out,
                    "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nunknown_commands:{}\r\nprotocol_errors:{}\r\nrl_checks_allowed:{}\r\nrl_checks_denied:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nrefused_keys:{}\r\nrl_tls_handshakes:{}\r\nrl_tls_handshake_failures:{}\r\nrl_tls_handshake_timeouts:{}\r\n",
                    totals.connections_received,
                    totals.commands_processed,
                    totals.rejected_connections,
                    totals.unknown_commands,
                    totals.protocol_errors,
                    totals.checks_allowed,
                    totals.checks_denied,
                    engine_stats.expired,
                    engine_stats.evicted,
                    engine_stats.refused,
                    totals.tls_handshakes,
                    totals.tls_handshake_failures,
                    totals.tls_handshake_timeouts,
                );
                sync_stats(shared, &mut out);
                client_bound_stats(shared, &mut out);
            }
            "persistence" => persistence(shared, &mut out),
            "replication" => replication(shared, &mut out),
            "cpu" => {
                out.push_str("# CPU\r\n");
            }
            "keyspace" => {
                out.push_str("# Keyspace\r\n");
                let keys = shared.engine.key_count();
                if keys > 0 {
                    let _ = write!(out, "db0:keys={keys},expires={keys},avg_ttl=0\r\n");
                }
            }
            _ => {}
        }
    }
    out
}

/// INFO's `# Persistence` section: Redis's field names where they mean the same thing, and
/// `rl_*` for ours.
fn persistence(shared: &Shared, out: &mut String) {
    let p = shared.persist.status();
    let _ = write!(
        out,
        "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\naof_enabled:0\r\nrl_dir:{}\r\nrl_save_interval:{}\r\nrl_limits_log_bytes:{}\r\nrl_limits_log_live_records:{}\r\nrl_limits_log_compactions:{}\r\nrl_limits_log_load:{}\r\nrl_snapshot_load_status:{}\r\nrl_snapshot_load:{}\r\nrl_persistence_errors:{}\r\n",
        p.changes_since_save,
        p.bgsave_in_progress as u8,
        p.last_save_unix,
        if p.last_save_ok { "ok" } else { "err" },
        p.dir,
        shared.persist.save_interval.load(Ordering::Relaxed),
        p.log_bytes,
        p.log_live_records,
        p.compactions,
        p.log_load.replace(['\r', '\n'], " "),
        if p.snapshot_load_ok { "ok" } else { "err" },
        p.snapshot_load.replace(['\r', '\n'], " "),
        p.errors,
    );
}

/// The `# Replication` section.
fn replication(shared: &Shared, out: &mut String) {
    let repl = &shared.repl;
    let v = repl.view();
    out.push_str("# Replication\r\n");
    match &v.master {
        None => {
            out.push_str("role:master\r\n");
        }
        Some(m) => {
            let (state, last_io, down_since, clock) = repl
                .link
                .lock()
                .map(|l| {
                    (
                        l.state,
                        l.last_io.elapsed().as_secs(),
                        l.down_since.elapsed().as_secs(),
                        l.clock_offset_ns,
                    )
                })
                .unwrap_or((LinkState::Connect, 0, 0, None));
            let up = state == LinkState::Connected;
            let _ = write!(
                out,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
                m.host,
                m.port,
                if up { "up" } else { "down" },
                if up { last_io as i64 } else { -1 },
                (state == LinkState::Sync) as u8,
                v.offset,
                v.offset,
            );
            if !up {
                let _ = write!(out, "master_link_down_since_seconds:{down_since}\r\n");
            }
            let _ = write!(
                out,
                "slave_priority:{}\r\nslave_read_only:1\r\nreplica_announced:1\r\n",
                repl.priority
            );
            if let Some(ns) = clock {
                let _ = write!(out, "rl_master_clock_offset_ms:{}\r\n", ns / 1_000_000);
            }
        }
    }
    let _ = write!(out, "connected_slaves:{}\r\n", v.replicas.len());
    for (i, r) in v.replicas.iter().enumerate() {
        let _ = write!(
            out,
            "slave{i}:ip={},port={},state=online,offset={},lag={}\r\n",
            r.ip, r.port, r.ack, r.lag_s
        );
    }
    let (size, first, histlen) = v.backlog.unwrap_or((repl.backlog_size, 0, 0));
    let _ = write!(
        out,
        "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{size}\r\nrepl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{histlen}\r\n",
        v.ids.replid,
        v.ids.replid2,
        v.offset,
        v.ids.second_offset,
        v.backlog.is_some() as u8,
    );
    if v.master.is_none() {
        let _ = write!(out, "slave_priority:{}\r\n", repl.priority);
    }
    if v.master.is_none() && repl.min_replicas_to_write.load(Ordering::Relaxed) > 0 {
        let _ = write!(out, "min_slaves_good_slaves:{}\r\n", repl.good_replicas());
    }
}

/// Lines appended to `# Stats`: connections closed by their bounds (src/bounds.rs). The first
/// is Redis's name; the other two are ratelimitd's.
fn client_bound_stats(shared: &Shared, out: &mut String) {
    let d = &shared.bounds.disconnected;
    let _ = write!(
        out,
        "client_output_buffer_limit_disconnections:{}\r\nclient_idle_timeout_disconnections:{}\r\nclient_auth_timeout_disconnections:{}\r\n",
        d.output.load(Ordering::Relaxed),
        d.idle.load(Ordering::Relaxed),
        d.auth_timeout.load(Ordering::Relaxed),
    );
}

/// Lines appended to `# Stats`: Redis's resync counters.
fn sync_stats(shared: &Shared, out: &mut String) {
    let r = &shared.repl;
    let _ = write!(
        out,
        "sync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\n",
        r.sync_full.load(Ordering::Relaxed),
        r.sync_partial_ok.load(Ordering::Relaxed),
        r.sync_partial_err.load(Ordering::Relaxed),
    );
}
