//! Users and roles against the real binary, with real clients (the `redis` crate, redis-cli
//! with --user/--pass): what each role may do, key patterns between tenants, Redis's refusal
//! texts, ACL LOG, users kept across a restart (and never in clear on disk), the ACL file, and
//! users reaching a replica.

mod common;

use common::{eventually, run, Daemon};

/// A connection signed in as `user`.
fn signed_in(d: &Daemon, user: &str, pass: &str) -> redis::Connection {
    let mut con = d.client();
    let ok: String = run(&mut con, &["AUTH", user, pass]).expect("AUTH");
    assert_eq!(ok, "OK");
    con
}

fn setuser(con: &mut redis::Connection, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER"];
    args.extend_from_slice(rules);
    assert_eq!(run::<String>(con, &args).expect("ACL SETUSER"), "OK");
}

#[test]
fn the_checker_role_checks_and_changes_nothing() {
    let d = Daemon::start();
    let mut admin = d.client();
    run::<String>(&mut admin, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "5/1m"]).unwrap();
    setuser(
        &mut admin,
        &["checker", "on", ">pw", "~*", "+@rate_limit", "+acl|whoami"],
    );
    let mut c = signed_in(&d, "checker", "pw");
    let r: Vec<i64> = run(&mut c, &["RL.CHECK", "alice", "/x"]).unwrap();
    assert_eq!(r[0], 1);
    run::<Vec<i64>>(&mut c, &["CL.THROTTLE", "k", "5", "10", "60"]).unwrap();
    run::<Vec<i64>>(&mut c, &["RL.PEEK", "alice", "/x"]).unwrap();
    for (args, name) in [
        (
            &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1000/1s"][..],
            "rl.limit|set",
        ),
        (&["RL.LIMIT", "DEL", "DEFAULT"], "rl.limit|del"),
        (&["RL.RESET", "alice", "/x"], "rl.reset"),
        (&["FLUSHALL"], "flushall"),
        (&["CONFIG", "SET", "maxmemory", "1"], "config|set"),
        (&["REPLICAOF", "127.0.0.1", "1"], "replicaof"),
        (&["ACL", "SETUSER", "checker", "+@all"], "acl|setuser"),
        (&["ACL", "LIST"], "acl|list"),
        (&["SET", "k", "v"], "set"),
    ] {
        let err = run::<redis::Value>(&mut c, args).unwrap_err();
        assert_eq!(
            err,
            format!("NOPERM: User checker has no permissions to run the '{name}' command"),
            "{args:?}"
        );
    }
    // Nothing was changed by the refusals.
    let limit: Vec<String> = run(&mut admin, &["RL.LIMIT", "GET", "DEFAULT"]).unwrap();
    assert_eq!(limit[1], "5/1m");
    // The refusals are in ACL LOG, with Redis's fields.
    let log: Vec<redis::Value> = run(&mut admin, &["ACL", "LOG", "100"]).unwrap();
    let text = format!("{log:?}");
    for want in ["flushall", "config|set", "checker", "toplevel", "command"] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // ACL WHOAMI and DRYRUN.
    assert_eq!(
        run::<String>(&mut c, &["ACL", "WHOAMI"]).unwrap(),
        "checker"
    );
    assert_eq!(
        run::<String>(
            &mut admin,
            &["ACL", "DRYRUN", "checker", "RL.CHECK", "a", "/x"]
        )
        .unwrap(),
        "OK"
    );
    let no: String = run(&mut admin, &["ACL", "DRYRUN", "checker", "FLUSHALL"]).unwrap();
    assert!(
        no.contains("no permissions to run the 'flushall' command"),
        "{no}"
    );
}

#[test]
fn a_key_pattern_stops_one_tenant_at_anothers_clients() {
    let d = Daemon::start();
    let mut admin = d.client();
    setuser(
        &mut admin,
        &[
            "tenant1",
            "on",
            ">t1",
            "~tenant1:*",
            "+@rate_limit",
            "+@string",
            "+@transaction",
        ],
    );
    let mut t = signed_in(&d, "tenant1", "t1");
    run::<Vec<i64>>(&mut t, &["RL.CHECK", "tenant1:alice", "/x"]).unwrap();
    run::<String>(&mut t, &["SET", "tenant1:k", "1"]).unwrap();
    for args in [
        &["RL.CHECK", "tenant2:bob", "/x"][..],
        &["RL.PEEK", "tenant2:bob", "/x"],
        &["CL.THROTTLE", "tenant2:bob", "1", "1", "1"],
        &["SET", "tenant2:k", "1"],
        &["GET", "tenant2:k"],
    ] {
        let err = run::<redis::Value>(&mut t, args).unwrap_err();
        assert_eq!(err, "NOPERM: No permissions to access a key", "{args:?}");
    }
    // Inside MULTI a refusal is a queuing-time error: EXEC aborts.
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg("tenant1:k")
        .arg("2")
        .cmd("SET")
        .arg("tenant2:k")
        .arg("2");
    // (The redis crate reports the queued refusal rather than EXEC's EXECABORT.)
    let err = pipe.query::<redis::Value>(&mut t).unwrap_err();
    let err = format!("{err:?}");
    assert!(err.contains("EXECABORT") || err.contains("NOPERM"), "{err}");
    assert_eq!(
        run::<String>(&mut admin, &["GET", "tenant1:k"]).unwrap(),
        "1",
        "nothing of the aborted transaction ran"
    );
}

#[test]
fn requirepass_is_the_default_users_password_and_users_sign_in_with_redis_cli() {
    let d = Daemon::start_with(&["--requirepass", "s3cret"]);
    let mut con = d.client();
    assert_eq!(
        run::<String>(&mut con, &["PING"]).unwrap_err(),
        "NOAUTH: Authentication required."
    );
    assert_eq!(
        run::<String>(&mut con, &["AUTH", "wrong"]).unwrap_err(),
        "WRONGPASS: invalid username-password pair or user is disabled."
    );
    run::<String>(&mut con, &["AUTH", "s3cret"]).unwrap();
    setuser(&mut con, &["ops", "on", ">opspw", "+@all", "~*"]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &d.port.to_string(), "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli runs");
        let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.push_str(String::from_utf8_lossy(&out.stderr).trim());
        text
    };
    assert_eq!(
        cli(&["--user", "ops", "--pass", "opspw", "ACL", "WHOAMI"]),
        "ops"
    );
    assert_eq!(cli(&["--pass", "s3cret", "ACL", "WHOAMI"]), "default");
    let refused = cli(&["--user", "ops", "--pass", "nope", "PING"]);
    assert!(
        refused.contains("WRONGPASS") || refused.contains("NOAUTH"),
        "{refused}"
    );
    // A user that is off cannot sign in.
    setuser(&mut con, &["ops", "off"]);
    assert!(cli(&["--user", "ops", "--pass", "opspw", "PING"]).contains("WRONGPASS"));
}

#[test]
fn users_survive_a_restart_and_are_never_written_in_clear() {
    let dir = common::temp_dir("acl-restart");
    let dir_s = dir.to_str().expect("utf-8 path");
    {
        let d = Daemon::start_with(&["--dir", dir_s]);
        let mut con = d.client();
        setuser(
            &mut con,
            &["alice", "on", ">cleartext-pw", "~a:*", "+@rate_limit"],
        );
        setuser(&mut con, &["bob", "on", ">bobpw", "+@all"]);
        assert_eq!(
            run::<i64>(&mut con, &["ACL", "DELUSER", "bob", "ghost"]).unwrap(),
            1
        );
    }
    let log = std::fs::read(dir.join("limits.log")).expect("the limits log");
    assert!(
        !log.windows(12).any(|w| w == b"cleartext-pw"),
        "a password reached the disk in clear"
    );
    let d = Daemon::start_with(&["--dir", dir_s]);
    let mut a = signed_in(&d, "alice", "cleartext-pw");
    run::<Vec<i64>>(&mut a, &["RL.CHECK", "a:1", "/x"]).unwrap();
    assert!(run::<Vec<i64>>(&mut a, &["RL.CHECK", "b:1", "/x"]).is_err());
    let mut con = d.client();
    let users: Vec<String> = run(&mut con, &["ACL", "USERS"]).unwrap();
    assert_eq!(users, ["alice", "default"]);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_acl_file_loads_at_start_and_acl_save_and_load_use_it() {
    let dir = common::temp_dir("aclfile");
    let file = dir.join("users.acl");
    std::fs::write(
        &file,
        "# the checkers\nuser checker on >pw ~* +@rate_limit\nuser default on nopass ~* &* +@all\n",
    )
    .unwrap();
    let file_s = file.to_str().expect("utf-8 path");
    let data = dir.join("data");
    let d = Daemon::start_with(&["--aclfile", file_s, "--dir", data.to_str().unwrap()]);
    let mut c = signed_in(&d, "checker", "pw");
    assert!(run::<String>(&mut c, &["FLUSHALL"]).is_err());
    let mut admin = d.client();
    setuser(&mut admin, &["added", "on", ">x", "+ping"]);
    assert_eq!(run::<String>(&mut admin, &["ACL", "SAVE"]).unwrap(), "OK");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("user added on #"), "{saved}");
    assert!(
        !saved.contains(">x"),
        "passwords are saved as hashes: {saved}"
    );
    // ACL LOAD puts the file back: a user made since is gone, and its connection closed.
    std::fs::write(&file, "user checker on >pw2 ~* +@rate_limit\n").unwrap();
    let mut added = signed_in(&d, "added", "x");
    assert_eq!(run::<String>(&mut admin, &["ACL", "LOAD"]).unwrap(), "OK");
    let users: Vec<String> = run(&mut admin, &["ACL", "USERS"]).unwrap();
    assert_eq!(users, ["checker", "default"]);
    assert!(
        run::<String>(&mut added, &["PING"]).is_err(),
        "a deleted user's connection ends"
    );
    signed_in(&d, "checker", "pw2");
    // A bad file is refused whole.
    std::fs::write(&file, "user checker on +nope\n").unwrap();
    let err = run::<String>(&mut admin, &["ACL", "LOAD"]).unwrap_err();
    assert!(err.contains("+nope"), "{err}");
    signed_in(&d, "checker", "pw2");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn acl_commands_answer_as_redis_does() {
    let d = Daemon::start();
    let mut con = d.client();
    let list: Vec<String> = run(&mut con, &["ACL", "LIST"]).unwrap();
    assert_eq!(list, ["user default on nopass ~* &* +@all"]);
    let err = run::<String>(&mut con, &["ACL", "SETUSER", "x", "+nope"]).unwrap_err();
    assert!(
        err.ends_with(
            "Error in ACL SETUSER modifier '+nope': Unknown command or category name in ACL"
        ),
        "{err}"
    );
    let err = run::<String>(&mut con, &["ACL", "DELUSER", "default"]).unwrap_err();
    assert!(
        err.ends_with("The 'default' user cannot be removed"),
        "{err}"
    );
    setuser(
        &mut con,
        &[
            "u",
            "on",
            "#2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
            "%R~r:*",
            "&news",
            "+get",
        ],
    );
    let got: redis::Value = run(&mut con, &["ACL", "GETUSER", "u"]).unwrap();
    let text = format!("{got:?}");
    for want in [
        "flags",
        "on",
        "passwords",
        "2bb80d53",
        "-@all +get",
        "%R~r:*",
        "&news",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let cats: Vec<String> = run(&mut con, &["ACL", "CAT"]).unwrap();
    assert!(cats.contains(&"rate_limit".to_string()) && cats.contains(&"limits".to_string()));
    let checks: Vec<String> = run(&mut con, &["ACL", "CAT", "rate_limit"]).unwrap();
    assert!(checks.contains(&"rl.check".to_string()), "{checks:?}");
    // COMMAND INFO reports the categories of the table.
    let info: redis::Value = run(&mut con, &["COMMAND", "INFO", "rl.check"]).unwrap();
    assert!(format!("{info:?}").contains("@rate_limit"), "{info:?}");
    let pass: String = run(&mut con, &["ACL", "GENPASS"]).unwrap();
    assert_eq!(pass.len(), 64);
}

#[test]
fn users_reach_a_replica_through_the_stream() {
    let primary = Daemon::start();
    let replica = Daemon::start_with(&["--replicaof", &format!("127.0.0.1:{}", primary.port)]);
    let mut r = replica.client();
    eventually("the link up", 10, || {
        let info: String = run(&mut r, &["INFO", "replication"]).unwrap();
        info.contains("master_link_status:up")
    });
    let mut p = primary.client();
    setuser(&mut p, &["reader", "on", ">rpw", "+@read", "~*"]);
    eventually("the user on the replica", 10, || {
        let users: Vec<String> = run(&mut r, &["ACL", "USERS"]).unwrap();
        users.contains(&"reader".to_string())
    });
    let mut reader = signed_in(&replica, "reader", "rpw");
    run::<Option<String>>(&mut reader, &["GET", "x"]).unwrap();
    // A replica's clients cannot change users (a write refused as every write is).
    let err = run::<String>(&mut r, &["ACL", "SETUSER", "x", "on"]).unwrap_err();
    assert!(err.contains("read only replica"), "{err}");
}

#[test]
fn a_full_sync_brings_the_primarys_users_and_drops_others() {
    let primary = Daemon::start();
    let mut p = primary.client();
    setuser(&mut p, &["early", "on", ">epw", "+@read", "~*"]);
    // A replica with a user of its own, which the primary does not have.
    let replica = Daemon::start();
    let mut r = replica.client();
    setuser(&mut r, &["stray", "on", ">spw", "+@all", "~*"]);
    run::<String>(
        &mut r,
        &["REPLICAOF", "127.0.0.1", &primary.port.to_string()],
    )
    .unwrap();
    eventually("the user from the full sync", 10, || {
        let users: Vec<String> = run(&mut r, &["ACL", "USERS"]).unwrap();
        users.contains(&"early".to_string()) && !users.contains(&"stray".to_string())
    });
    let mut early = signed_in(&replica, "early", "epw");
    run::<Option<String>>(&mut early, &["GET", "x"]).unwrap();
    let got: Vec<String> = run(&mut r, &["ACL", "USERS"]).unwrap();
    assert!(got.contains(&"default".to_string()), "{got:?}");
}

#[test]
fn a_replica_signs_in_as_its_masteruser_with_only_the_replication_commands() {
    let primary = Daemon::start_with(&["--requirepass", "adminpw"]);
    let mut p = signed_in(&primary, "default", "adminpw");
    setuser(
        &mut p,
        &[
            "repl",
            "on",
            ">replpw",
            "resetkeys",
            "-@all",
            "+psync",
            "+replconf",
            "+ping",
        ],
    );
    let replica = Daemon::start_with(&[
        "--replicaof",
        &format!("127.0.0.1:{}", primary.port),
        "--masteruser",
        "repl",
        "--masterauth",
        "replpw",
    ]);
    // The replica takes the primary's users with the full sync, its default user's password
    // included (AUTH default <any> passes before that, with no password set).
    let mut r = signed_in(&replica, "default", "adminpw");
    eventually("the link up as repl", 20, || {
        let info: String = run(&mut r, &["INFO", "replication"]).unwrap();
        info.contains("master_link_status:up")
    });
    // The replication user could sign in and sync, and can do nothing else.
    let mut as_repl = signed_in(&primary, "repl", "replpw");
    let err = run::<Option<String>>(&mut as_repl, &["GET", "x"]).unwrap_err();
    assert!(err.contains("NOPERM"), "{err}");
}

#[test]
fn deleting_a_user_closes_its_connections_at_once_over_resp_and_memcached() {
    let d = Daemon::start_with(&["--memcached-port", "0", "--requirepass", "adminpw"]);
    let mut admin = signed_in(&d, "default", "adminpw");
    setuser(&mut admin, &["app", "on", ">apppw", "~*", "&*", "+@all"]);
    let mut idle = common::Raw::connect(d.port);
    idle.send(&common::resp(&[b"AUTH", b"app", b"apppw"]));
    idle.expect(b"+OK\r\n");
    let mut sub = common::Raw::connect(d.port);
    sub.send(&common::resp(&[b"AUTH", b"app", b"apppw"]));
    sub.send(&common::resp(&[b"SUBSCRIBE", b"c"]));
    sub.expect(b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    let mut mc = d.mc_raw();
    mc.send(b"set auth 0 0 9\r\napp apppw\r\n");
    mc.expect(b"STORED\r\n");
    // CLIENT LIST names the memcached connection's user too.
    let list: String = run(&mut admin, &["CLIENT", "LIST"]).unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains(" user=app ")).count(),
        3,
        "{list}"
    );
    assert_eq!(
        run::<i64>(&mut admin, &["ACL", "DELUSER", "app"]).unwrap(),
        1
    );
    // Closed without sending anything more: idle, subscribed, and memcached.
    assert!(idle.closed());
    assert!(sub.closed());
    assert!(mc.closed());
}

#[test]
fn requirepass_still_guards_the_default_user_when_the_acl_file_has_none() {
    let dir = common::temp_dir("aclfile-requirepass");
    let file = dir.join("users.acl");
    std::fs::write(&file, "user checker on >pw ~* +@rate_limit\n").unwrap();
    let d = Daemon::start_with(&[
        "--aclfile",
        file.to_str().unwrap(),
        "--requirepass",
        "adminpw",
        "--dir",
        dir.join("data").to_str().unwrap(),
    ]);
    // Not open: the file's lack of a default line does not undo --requirepass.
    let mut anonymous = d.client();
    let err = run::<String>(&mut anonymous, &["PING"]).unwrap_err();
    assert!(err.contains("NOAUTH"), "{err}");
    let mut admin = signed_in(&d, "default", "adminpw");
    // ACL LOAD keeps it so too.
    assert_eq!(run::<String>(&mut admin, &["ACL", "LOAD"]).unwrap(), "OK");
    let mut anonymous = d.client();
    assert!(run::<String>(&mut anonymous, &["PING"]).is_err());
    signed_in(&d, "default", "adminpw");
    signed_in(&d, "checker", "pw");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
