-- Accounts are keyed by a peppered SHA-256 of the normalized phone number; the number itself
-- is never stored here.
CREATE TABLE accounts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_key  BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE devices (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts (id),
    name             TEXT NOT NULL,
    token_hash       BLOB NOT NULL UNIQUE,
    token_expires_at INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX devices_account ON devices (account_id);

-- One-time codes, kept for a day after issue so that rate limits can count them.
CREATE TABLE auth_codes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_key  BLOB NOT NULL,
    client_key BLOB NOT NULL,
    code_hash  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX auth_codes_phone ON auth_codes (phone_key, created_at);
CREATE INDEX auth_codes_client ON auth_codes (client_key, created_at);

CREATE TABLE tickets (
    ticket_hash BLOB PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    device_id   INTEGER NOT NULL REFERENCES devices (id),
    expires_at  INTEGER NOT NULL
);

-- Written only by the development notifier.
CREATE TABLE dev_codes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    phone      TEXT NOT NULL,
    code       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX dev_codes_phone ON dev_codes (phone, id);

CREATE TABLE documents (
    id         BLOB PRIMARY KEY,
    owner      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX documents_owner ON documents (owner, created_at);

-- Content-addressed, append-only chunks; seq is store-wide and never reused (AUTOINCREMENT).
CREATE TABLE chunks (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id BLOB NOT NULL,
    hash   BLOB NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('snapshot', 'incremental')),
    bytes  BLOB NOT NULL,
    UNIQUE (doc_id, hash)
);
CREATE INDEX chunks_doc_seq ON chunks (doc_id, seq);
