-- The officials' side: staff members, their grants (roles and scopes as data), login
-- failures and locks per name, staff sessions, and the append-only audit log.

CREATE TABLE staff_members (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    username            TEXT NOT NULL UNIQUE,
    display_name        TEXT NOT NULL,
    -- argon2id PHC string: the parameters travel with each hash.
    password_hash       TEXT NOT NULL,
    password_changed_at INTEGER NOT NULL,
    totp_secret         BLOB,
    -- The last TOTP time step used: a code is never accepted twice.
    totp_last_step      INTEGER,
    disabled            INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL
);

-- scope '' for admin (unscoped); an agency code or a region code otherwise.
CREATE TABLE staff_grants (
    member_id INTEGER NOT NULL REFERENCES staff_members (id),
    role      TEXT NOT NULL CHECK (role IN ('admin', 'agency_officer', 'dispatcher')),
    scope     TEXT NOT NULL DEFAULT '',
    CHECK ((role = 'admin') = (scope = '')),
    PRIMARY KEY (member_id, role, scope)
);

-- Keyed by a peppered SHA-256 of the normalized name typed, whether or not a member has it.
CREATE TABLE staff_login_failures (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name_key BLOB NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX staff_login_failures_name ON staff_login_failures (name_key, at);

CREATE TABLE staff_login_locks (
    name_key     BLOB PRIMARY KEY,
    locked_until INTEGER NOT NULL
);

-- Tokens are stored only as SHA-256. A separate table from citizens' devices: a citizen
-- token is never a staff token, and the other way round.
CREATE TABLE staff_sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   BLOB NOT NULL UNIQUE,
    member_id    INTEGER NOT NULL REFERENCES staff_members (id),
    kind         TEXT NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE INDEX staff_sessions_member ON staff_sessions (member_id);
CREATE INDEX staff_sessions_expiry ON staff_sessions (expires_at);

-- Who did what to which record, when. Never a password, code or token.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('staff', 'unknown_name', 'system')),
    actor_id    INTEGER,
    actor_name  TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT,
    target_id   TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    client_ip   TEXT,
    detail      TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- Append-only: the database itself refuses to change or remove an entry.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
