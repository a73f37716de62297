//! Versioned schema migrations, applied in order at start-up; the version is
//! SQLite's `user_version`. A migration is never edited once released: add a
//! new one.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, BMNodes, jobs with their nodes and log, user messages.
    r#"
    CREATE TABLE users (
        user_id       TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );

    CREATE TABLE bm_nodes (
        -- Registration order; an explicit INTEGER PRIMARY KEY survives VACUUM,
        -- so listing in this order needs no sort.
        seq               INTEGER PRIMARY KEY,
        node_id           TEXT NOT NULL UNIQUE,
        hostname          TEXT NOT NULL UNIQUE,
        os_version        TEXT NOT NULL,
        cpu_arch          TEXT NOT NULL CHECK (cpu_arch IN ('x86_64', 'aarch64')),
        serial_number     TEXT NOT NULL DEFAULT '',
        brand             TEXT NOT NULL DEFAULT '',
        description       TEXT NOT NULL DEFAULT '',
        ipmi_address      TEXT NOT NULL,
        ipmi_port         INTEGER NOT NULL DEFAULT 623 CHECK (ipmi_port BETWEEN 1 AND 65535),
        ipmi_username     TEXT NOT NULL,
        ipmi_password     TEXT NOT NULL,
        -- NULL until known (a node found by a BMC scan has not booted yet).
        pxe_mac           TEXT UNIQUE,
        pxe_address       TEXT NOT NULL DEFAULT '',
        pxe_interface     TEXT NOT NULL DEFAULT '',
        os_disk_name      TEXT NOT NULL DEFAULT '',
        mgmt_address      TEXT NOT NULL DEFAULT '',
        mgmt_netmask      TEXT NOT NULL DEFAULT '',
        mgmt_gateway      TEXT NOT NULL DEFAULT '',
        mgmt_bond         INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_bond IN (0, 1)),
        mgmt_vlan         INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_vlan IN (0, 1)),
        mgmt_vlan_id      INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_vlan_id BETWEEN 0 AND 4094),
        public_address    TEXT NOT NULL DEFAULT '',
        public_netmask    TEXT NOT NULL DEFAULT '',
        public_gateway    TEXT NOT NULL DEFAULT '',
        public_bond       INTEGER NOT NULL DEFAULT 0 CHECK (public_bond IN (0, 1)),
        public_vlan       INTEGER NOT NULL DEFAULT 0 CHECK (public_vlan IN (0, 1)),
        public_vlan_id    INTEGER NOT NULL DEFAULT 0 CHECK (public_vlan_id BETWEEN 0 AND 4094),
        status            TEXT NOT NULL DEFAULT 'new' CHECK (status IN
            ('new', 'verifying', 'ready', 'provisioning', 'active', 'provision_failed',
             'inspecting', 'inspect_failed', 'deleting')),
        pre_status        TEXT NOT NULL DEFAULT '' CHECK (pre_status IN
            ('', 'new', 'verifying', 'ready', 'provisioning', 'active', 'provision_failed',
             'inspecting', 'inspect_failed', 'deleting')),
        power_state       TEXT NOT NULL DEFAULT 'unknown' CHECK (power_state IN ('on', 'off', 'unknown')),
        power_state_time  INTEGER,
        create_time       INTEGER NOT NULL,
        update_time       INTEGER NOT NULL,
        -- 0 = ask the BMC (17, then 3).
        ipmi_cipher_suite INTEGER NOT NULL DEFAULT 0 CHECK (ipmi_cipher_suite IN (0, 3, 17)),
        -- The BMC key Kg (hex), when the BMC has one; never returned.
        ipmi_bmc_key      TEXT NOT NULL DEFAULT '',
        bmc_reachable     INTEGER NOT NULL DEFAULT 1 CHECK (bmc_reachable IN (0, 1)),
        -- Consecutive failed power-sync polls.
        bmc_failures      INTEGER NOT NULL DEFAULT 0,
        UNIQUE (ipmi_address, ipmi_port)
    );
    CREATE INDEX bm_nodes_status ON bm_nodes (status);

    CREATE TABLE nodes (
        seq           INTEGER PRIMARY KEY,
        node_id       TEXT NOT NULL UNIQUE,
        -- Where the host's SSH server answers.
        address       TEXT NOT NULL,
        port          INTEGER NOT NULL DEFAULT 22,
        hostname      TEXT NOT NULL DEFAULT '',
        role          TEXT NOT NULL DEFAULT '',
        sub_roles     TEXT NOT NULL DEFAULT '[]',
        product_type  TEXT NOT NULL DEFAULT '',
        product_name  TEXT NOT NULL DEFAULT '',
        zone_id       TEXT NOT NULL DEFAULT '',
        description   TEXT NOT NULL DEFAULT '',
        status        TEXT NOT NULL DEFAULT 'collecting' CHECK (status IN ('collecting', 'available', 'collect_failed')),
        pre_status    TEXT NOT NULL DEFAULT '' CHECK (pre_status IN ('', 'collecting', 'available', 'collect_failed')),
        machine_id    TEXT NOT NULL DEFAULT '',
        -- Trusted on first use; a different key later fails collection.
        host_key      TEXT NOT NULL DEFAULT '',
        -- The BMNode this host was provisioned as, if any.
        bm_node_id    TEXT NOT NULL DEFAULT '',
        -- The collected inventory (JSON; disk and network ids included).
        inventory     TEXT NOT NULL DEFAULT '{}',
        create_time   INTEGER NOT NULL,
        update_time   INTEGER NOT NULL,
        UNIQUE (address, port)
    );

    CREATE TABLE leases (
        mac      TEXT PRIMARY KEY NOT NULL,
        ip       TEXT NOT NULL UNIQUE,
        expires  INTEGER NOT NULL,
        bound    INTEGER NOT NULL CHECK (bound IN (0, 1))
    );

    -- The boot timeline: DHCP exchanges, files served, per machine.
    CREATE TABLE boot_events (
        seq         INTEGER PRIMARY KEY,
        mac         TEXT NOT NULL,
        node_id     TEXT NOT NULL DEFAULT '',
        kind        TEXT NOT NULL CHECK (kind IN ('dhcp', 'tftp', 'http')),
        detail      TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE INDEX boot_events_mac ON boot_events (mac, seq);

    CREATE TABLE jobs (
        job_id      TEXT PRIMARY KEY NOT NULL,
        job_action  TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status GLOB 'step[0-9]*' OR status IN ('successful', 'failed')),
        pre_status  TEXT NOT NULL DEFAULT '' CHECK (pre_status = '' OR pre_status GLOB 'step[0-9]*' OR pre_status IN ('successful', 'failed')),
        progress    INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        user_id     TEXT NOT NULL DEFAULT '',
        request_id  TEXT NOT NULL DEFAULT '',
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        ended_at    INTEGER
    );
    CREATE INDEX jobs_action_created ON jobs (job_action, created_at);

    CREATE TABLE job_nodes (
        job_id    TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        node_id   TEXT NOT NULL,
        status    TEXT NOT NULL DEFAULT '',
        progress  INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        -- The node's outcome: 0, or the API ret_code of its failure, and the
        -- catalogue text explaining it.
        ret_code  INTEGER NOT NULL DEFAULT 0,
        message   TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (job_id, node_id)
    );

    CREATE TABLE job_log (
        job_id      TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        job_status  TEXT NOT NULL,
        line        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (job_id, seq)
    );

    CREATE TABLE messages (
        id               TEXT PRIMARY KEY NOT NULL,
        event_id         TEXT NOT NULL,
        message_level    TEXT NOT NULL CHECK (message_level IN ('ERROR', 'WARNING', 'INFO')),
        user_message     TEXT NOT NULL,
        resource_type    TEXT NOT NULL,
        resource_id      TEXT NOT NULL,
        request_id       TEXT NOT NULL DEFAULT '',
        created_at       INTEGER NOT NULL,
        guaranteed_until INTEGER NOT NULL
    );
    CREATE INDEX messages_resource ON messages (resource_id);
    CREATE INDEX messages_expiry ON messages (guaranteed_until);
    "#,
    // 2: the per-node secret of boot configs and callbacks, and the last
    // inventory a deploy ramdisk reported.
    r#"
    ALTER TABLE bm_nodes ADD COLUMN deploy_token TEXT NOT NULL DEFAULT '';
    ALTER TABLE bm_nodes ADD COLUMN inventory TEXT NOT NULL DEFAULT '';
    ALTER TABLE bm_nodes ADD COLUMN inventory_time INTEGER;

    -- Boot timelines also hold installer and ramdisk callbacks.
    CREATE TABLE boot_events_new (
        seq         INTEGER PRIMARY KEY,
        mac         TEXT NOT NULL,
        node_id     TEXT NOT NULL DEFAULT '',
        kind        TEXT NOT NULL CHECK (kind IN ('dhcp', 'tftp', 'http', 'callback')),
        detail      TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    INSERT INTO boot_events_new SELECT seq, mac, node_id, kind, detail, created_ms FROM boot_events;
    DROP TABLE boot_events;
    ALTER TABLE boot_events_new RENAME TO boot_events;
    CREATE INDEX boot_events_mac ON boot_events (mac, seq);
    "#,
    // 3: machines enlisted by discovery have no BMC yet: a BMC address (and
    // port) is unique only when there is one.
    r#"
    CREATE TABLE bm_nodes_new (
        -- Registration order; an explicit INTEGER PRIMARY KEY survives VACUUM,
        -- so listing in this order needs no sort.
        seq               INTEGER PRIMARY KEY,
        node_id           TEXT NOT NULL UNIQUE,
        hostname          TEXT NOT NULL UNIQUE,
        os_version        TEXT NOT NULL,
        cpu_arch          TEXT NOT NULL CHECK (cpu_arch IN ('x86_64', 'aarch64')),
        serial_number     TEXT NOT NULL DEFAULT '',
        brand             TEXT NOT NULL DEFAULT '',
        description       TEXT NOT NULL DEFAULT '',
        ipmi_address      TEXT NOT NULL,
        ipmi_port         INTEGER NOT NULL DEFAULT 623 CHECK (ipmi_port BETWEEN 1 AND 65535),
        ipmi_username     TEXT NOT NULL,
        ipmi_password     TEXT NOT NULL,
        -- NULL until known (a node found by a BMC scan has not booted yet).
        pxe_mac           TEXT UNIQUE,
        pxe_address       TEXT NOT NULL DEFAULT '',
        pxe_interface     TEXT NOT NULL DEFAULT '',
        os_disk_name      TEXT NOT NULL DEFAULT '',
        mgmt_address      TEXT NOT NULL DEFAULT '',
        mgmt_netmask      TEXT NOT NULL DEFAULT '',
        mgmt_gateway      TEXT NOT NULL DEFAULT '',
        mgmt_bond         INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_bond IN (0, 1)),
        mgmt_vlan         INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_vlan IN (0, 1)),
        mgmt_vlan_id      INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_vlan_id BETWEEN 0 AND 4094),
        public_address    TEXT NOT NULL DEFAULT '',
        public_netmask    TEXT NOT NULL DEFAULT '',
        public_gateway    TEXT NOT NULL DEFAULT '',
        public_bond       INTEGER NOT NULL DEFAULT 0 CHECK (public_bond IN (0, 1)),
        public_vlan       INTEGER NOT NULL DEFAULT 0 CHECK (public_vlan IN (0, 1)),
        public_vlan_id    INTEGER NOT NULL DEFAULT 0 CHECK (public_vlan_id BETWEEN 0 AND 4094),
        status            TEXT NOT NULL DEFAULT 'new' CHECK (status IN
            ('new', 'verifying', 'ready', 'provisioning', 'active', 'provision_failed',
             'inspecting', 'inspect_failed', 'deleting')),
        pre_status        TEXT NOT NULL DEFAULT '' CHECK (pre_status IN
            ('', 'new', 'verifying', 'ready', 'provisioning', 'active', 'provision_failed',
             'inspecting', 'inspect_failed', 'deleting')),
        power_state       TEXT NOT NULL DEFAULT 'unknown' CHECK (power_state IN ('on', 'off', 'unknown')),
        power_state_time  INTEGER,
        create_time       INTEGER NOT NULL,
        update_time       INTEGER NOT NULL,
        -- 0 = ask the BMC (17, then 3).
        ipmi_cipher_suite INTEGER NOT NULL DEFAULT 0 CHECK (ipmi_cipher_suite IN (0, 3, 17)),
        -- The BMC key Kg (hex), when the BMC has one; never returned.
        ipmi_bmc_key      TEXT NOT NULL DEFAULT '',
        bmc_reachable     INTEGER NOT NULL DEFAULT 1 CHECK (bmc_reachable IN (0, 1)),
        -- Consecutive failed power-sync polls.
        bmc_failures      INTEGER NOT NULL DEFAULT 0,
        deploy_token      TEXT NOT NULL DEFAULT '',
        inventory         TEXT NOT NULL DEFAULT '',
        inventory_time    INTEGER
    );
    INSERT INTO bm_nodes_new SELECT * FROM bm_nodes;
    DROP TABLE bm_nodes;
    ALTER TABLE bm_nodes_new RENAME TO bm_nodes;
    CREATE INDEX bm_nodes_status ON bm_nodes (status);
    CREATE UNIQUE INDEX bm_nodes_bmc ON bm_nodes (ipmi_address, ipmi_port) WHERE ipmi_address != '';
    "#,
    // 4: a job's nodes in the order they were given, without a sort (rows of
    // equal job_id sit in rowid order in this index): a 1,000-node job's
    // status is polled while it runs.
    r#"
    CREATE INDEX job_nodes_job ON job_nodes (job_id);
    "#,
    // 5: real servers. The firmware mode a node boots in (nodes registered
    // before this version were provisioned with legacy boot flags, so they
    // keep `bios`; new registrations default to `uefi`), its root-device
    // hints besides the name (JSON), and whether the deploy ramdisk saw
    // Secure Boot on (NULL: never reported).
    r#"
    ALTER TABLE bm_nodes ADD COLUMN boot_mode TEXT NOT NULL DEFAULT 'bios'
        CHECK (boot_mode IN ('uefi', 'bios'));
    ALTER TABLE bm_nodes ADD COLUMN root_device TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE bm_nodes ADD COLUMN secure_boot INTEGER CHECK (secure_boot IN (0, 1));
    "#,
    // 6: the life after `active`: states `cleaning` and `clean_failed`
    // (UnprovisionBMNodes), and maintenance (a flag and its reason). The
    // status CHECK constraints change, so the table is rebuilt.
    r#"
    CREATE TABLE bm_nodes_new (
        seq               INTEGER PRIMARY KEY,
        node_id           TEXT NOT NULL UNIQUE,
        hostname          TEXT NOT NULL UNIQUE,
        os_version        TEXT NOT NULL,
        cpu_arch          TEXT NOT NULL CHECK (cpu_arch IN ('x86_64', 'aarch64')),
        serial_number     TEXT NOT NULL DEFAULT '',
        brand             TEXT NOT NULL DEFAULT '',
        description       TEXT NOT NULL DEFAULT '',
        ipmi_address      TEXT NOT NULL,
        ipmi_port         INTEGER NOT NULL DEFAULT 623 CHECK (ipmi_port BETWEEN 1 AND 65535),
        ipmi_username     TEXT NOT NULL,
        ipmi_password     TEXT NOT NULL,
        pxe_mac           TEXT UNIQUE,
        pxe_address       TEXT NOT NULL DEFAULT '',
        pxe_interface     TEXT NOT NULL DEFAULT '',
        os_disk_name      TEXT NOT NULL DEFAULT '',
        mgmt_address      TEXT NOT NULL DEFAULT '',
        mgmt_netmask      TEXT NOT NULL DEFAULT '',
        mgmt_gateway      TEXT NOT NULL DEFAULT '',
        mgmt_bond         INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_bond IN (0, 1)),
        mgmt_vlan         INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_vlan IN (0, 1)),
        mgmt_vlan_id      INTEGER NOT NULL DEFAULT 0 CHECK (mgmt_vlan_id BETWEEN 0 AND 4094),
        public_address    TEXT NOT NULL DEFAULT '',
        public_netmask    TEXT NOT NULL DEFAULT '',
        public_gateway    TEXT NOT NULL DEFAULT '',
        public_bond       INTEGER NOT NULL DEFAULT 0 CHECK (public_bond IN (0, 1)),
        public_vlan       INTEGER NOT NULL DEFAULT 0 CHECK (public_vlan IN (0, 1)),
        public_vlan_id    INTEGER NOT NULL DEFAULT 0 CHECK (public_vlan_id BETWEEN 0 AND 4094),
        status            TEXT NOT NULL DEFAULT 'new' CHECK (status IN
            ('new', 'verifying', 'ready', 'provisioning', 'active', 'provision_failed',
             'inspecting', 'inspect_failed', 'deleting', 'cleaning', 'clean_failed')),
        pre_status        TEXT NOT NULL DEFAULT '' CHECK (pre_status IN
            ('', 'new', 'verifying', 'ready', 'provisioning', 'active', 'provision_failed',
             'inspecting', 'inspect_failed', 'deleting', 'cleaning', 'clean_failed')),
        power_state       TEXT NOT NULL DEFAULT 'unknown' CHECK (power_state IN ('on', 'off', 'unknown')),
        power_state_time  INTEGER,
        create_time       INTEGER NOT NULL,
        update_time       INTEGER NOT NULL,
        ipmi_cipher_suite INTEGER NOT NULL DEFAULT 0 CHECK (ipmi_cipher_suite IN (0, 3, 17)),
        ipmi_bmc_key      TEXT NOT NULL DEFAULT '',
        bmc_reachable     INTEGER NOT NULL DEFAULT 1 CHECK (bmc_reachable IN (0, 1)),
        bmc_failures      INTEGER NOT NULL DEFAULT 0,
        deploy_token      TEXT NOT NULL DEFAULT '',
        inventory         TEXT NOT NULL DEFAULT '',
        inventory_time    INTEGER,
        boot_mode         TEXT NOT NULL DEFAULT 'uefi' CHECK (boot_mode IN ('uefi', 'bios')),
        root_device       TEXT NOT NULL DEFAULT '{}',
        secure_boot       INTEGER CHECK (secure_boot IN (0, 1)),
        maintenance       INTEGER NOT NULL DEFAULT 0 CHECK (maintenance IN (0, 1)),
        maintenance_reason TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO bm_nodes_new SELECT *, 0, '' FROM bm_nodes;
    DROP TABLE bm_nodes;
    ALTER TABLE bm_nodes_new RENAME TO bm_nodes;
    CREATE INDEX bm_nodes_status ON bm_nodes (status);
    CREATE UNIQUE INDEX bm_nodes_bmc ON bm_nodes (ipmi_address, ipmi_port) WHERE ipmi_address != '';
    "#,
    // 7: Redfish BMCs.
    REDFISH,
    // 8: discovery leases (hardening).
    MIGRATION_LEASE_DISCOVERY,
    MIGRATION_JOB_STEPS,
    // 10: what rackboot told a node's BMC, in its boot timeline.
    MIGRATION_BMC_EVENTS,
    // 11: each node's serial console (SOL) lines.
    MIGRATION_CONSOLE,
];

/// Redfish BMCs (migration 7): the node's BMC URL when it is not plain IPMI (`bmc_address`,
/// canonical), what makes it unique whatever the driver spelling
/// (`bmc_endpoint`: host:port/system path), whether its certificate is
/// verified, and the out-of-band inventory read from it.
const REDFISH: &str = r#"
    ALTER TABLE bm_nodes ADD COLUMN bmc_address TEXT NOT NULL DEFAULT '';
    ALTER TABLE bm_nodes ADD COLUMN bmc_endpoint TEXT NOT NULL DEFAULT '';
    ALTER TABLE bm_nodes ADD COLUMN bmc_verify_tls INTEGER NOT NULL DEFAULT 1 CHECK (bmc_verify_tls IN (0, 1));
    ALTER TABLE bm_nodes ADD COLUMN bmc_inventory TEXT NOT NULL DEFAULT '';
    ALTER TABLE bm_nodes ADD COLUMN bmc_inventory_time INTEGER;
    CREATE UNIQUE INDEX bm_nodes_bmc_endpoint ON bm_nodes (bmc_endpoint) WHERE bmc_endpoint != '';
"#;

/// Migration 8 (hardening): which leases discovery clients hold, so that
/// they stay short and a registered node is always preferred across a
/// restart; existing leases count as registered nodes'.
const MIGRATION_LEASE_DISCOVERY: &str = r#"
    ALTER TABLE leases ADD COLUMN discovery INTEGER NOT NULL DEFAULT 0 CHECK (discovery IN (0, 1));
"#;

/// Migration 9 (operations): when each node of a job entered and left each
/// step (GetStatus' per-step times), and finished jobs found by age (the
/// retention purge).
const MIGRATION_JOB_STEPS: &str = r#"
    CREATE TABLE job_node_steps (
        job_id      TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
        node_id     TEXT NOT NULL,
        step        TEXT NOT NULL,
        started_ms  INTEGER NOT NULL,
        ended_ms    INTEGER,
        PRIMARY KEY (job_id, node_id, step)
    );
    CREATE INDEX jobs_ended ON jobs (ended_at) WHERE ended_at IS NOT NULL;
"#;

/// Migration 10 (diagnosis): boot timelines also hold what rackboot told
/// the node's BMC (boot device, power cycle): the start of each attempt
/// the "why didn't it boot" rules look at.
const MIGRATION_BMC_EVENTS: &str = r#"
    CREATE TABLE boot_events_new (
        seq         INTEGER PRIMARY KEY,
        mac         TEXT NOT NULL,
        node_id     TEXT NOT NULL DEFAULT '',
        kind        TEXT NOT NULL CHECK (kind IN ('dhcp', 'tftp', 'http', 'callback', 'bmc')),
        detail      TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    INSERT INTO boot_events_new SELECT seq, mac, node_id, kind, detail, created_ms FROM boot_events;
    DROP TABLE boot_events;
    ALTER TABLE boot_events_new RENAME TO boot_events;
    CREATE INDEX boot_events_mac ON boot_events (mac, seq);
"#;

/// Migration 11 (console): what each node's serial console printed while
/// rackboot watched it (SOL), bounded per node by `console::BYTES_PER_NODE`.
const MIGRATION_CONSOLE: &str = r#"
    CREATE TABLE console_lines (
        seq         INTEGER PRIMARY KEY,
        node_id     TEXT NOT NULL REFERENCES bm_nodes (node_id) ON DELETE CASCADE,
        line        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    );
    CREATE INDEX console_lines_node ON console_lines (node_id, seq);
"#;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration past the database's `user_version`, each in its own
/// transaction together with the version bump. Refuses a database written by
/// a newer rackboot.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if current > SCHEMA_VERSION {
        return Err(format!(
            "the database is at schema version {current}, newer than this rackboot knows ({SCHEMA_VERSION}): run a newer rackboot or restore a backup"
        ));
    }
    if current > 0 && current < SCHEMA_VERSION {
        keep_a_copy(conn, current)?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

/// Before migrating a database of schema `version`: a consistent copy of
/// it next to it (`<file>.pre-migration-<version>`), so that a failed or
/// unwanted upgrade can be undone by putting it back (and running the older
/// rackboot). In-memory databases have no file and get no copy.
fn keep_a_copy(conn: &Connection, version: i64) -> Result<(), String> {
    let Some(path) = conn.path().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let copy = format!("{path}.pre-migration-{version}");
    let _ = std::fs::remove_file(&copy);
    conn.execute("VACUUM INTO ?1", [&copy]).map_err(|e| {
        format!("cannot copy the database to {copy} before upgrading its schema: {e} (free some disk space, or move the file away)")
    })?;
    tracing::info!(copy = %copy, from_version = version, to_version = SCHEMA_VERSION, "copied the database before upgrading its schema");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_database_is_copied_before_it_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rackboot.db");
        let mut conn = Connection::open(&path).unwrap();
        // A database of schema 8, as the previous release left it.
        for (i, sql) in MIGRATIONS.iter().enumerate().take(8) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO users (user_id, password_hash, created_at, updated_at) VALUES ('admin', 'h', 0, 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let copy = Connection::open(dir.path().join("rackboot.db.pre-migration-8")).unwrap();
        let v: i64 = copy
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 8, "the copy is the database before the upgrade");
        let users: i64 = copy
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 1);
        // A fresh database is not copied; an up-to-date one neither.
        migrate(&mut conn).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("pre-migration"))
                .count(),
            1
        );
    }

    #[test]
    fn migrations_apply_once_and_refuse_a_newer_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(migrate(&mut conn).unwrap_err().contains("newer"));
    }

    #[test]
    fn check_constraints_refuse_unknown_states() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let bad = conn.execute(
            "INSERT INTO jobs (job_id, job_action, status, created_at, updated_at) VALUES ('j-1', 'X', 'running', 0, 0)",
            [],
        );
        assert!(bad.is_err());
        conn.execute(
            "INSERT INTO jobs (job_id, job_action, status, created_at, updated_at) VALUES ('j-1', 'X', 'step0', 0, 0)",
            [],
        )
        .unwrap();
    }
}
