-- The officials' side: staff members, their grants (roles and scopes as data), login
-- failures and locks per name, staff sessions, and the append-only audit log.

CREATE TABLE staff_members (
    id                  BIGSERIAL PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    display_name        TEXT NOT NULL,
    -- argon2id PHC string: the parameters travel with each hash.
    password_hash       TEXT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    totp_secret         BYTEA,
    -- The last TOTP time step used: a code is never accepted twice.
    totp_last_step      BIGINT,
    disabled            BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL
);

-- scope '' for admin (unscoped); an agency code or a region code otherwise.
CREATE TABLE staff_grants (
    member_id BIGINT NOT NULL REFERENCES staff_members (id),
    role      TEXT NOT NULL CHECK (role IN ('admin', 'agency_officer', 'dispatcher')),
    scope     TEXT NOT NULL DEFAULT '',
    CHECK ((role = 'admin') = (scope = '')),
    PRIMARY KEY (member_id, role, scope)
);

-- Keyed by a peppered SHA-256 of the normalized name typed, whether or not a member has it.
CREATE TABLE staff_login_failures (
    id       BIGSERIAL PRIMARY KEY,
    name_key BYTEA NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX staff_login_failures_name ON staff_login_failures (name_key, at);

CREATE TABLE staff_login_locks (
    name_key     BYTEA PRIMARY KEY,
    locked_until BIGINT NOT NULL
);

-- Tokens are stored only as SHA-256. A separate table from citizens' devices: a citizen
-- token is never a staff token, and the other way round.
CREATE TABLE staff_sessions (
    id           BIGSERIAL PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    member_id    BIGINT NOT NULL REFERENCES staff_members (id),
    kind         TEXT NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX staff_sessions_member ON staff_sessions (member_id);
CREATE INDEX staff_sessions_expiry ON staff_sessions (expires_at);

-- Who did what to which record, when. Never a password, code or token.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('staff', 'unknown_name', 'system')),
    actor_id    BIGINT,
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
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
