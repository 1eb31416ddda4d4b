-- Accounts are keyed by a peppered SHA-256 of the normalized phone number; the number itself
-- is never stored here.
CREATE TABLE accounts (
    id         BIGSERIAL PRIMARY KEY,
    phone_key  BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE devices (
    id               BIGSERIAL PRIMARY KEY,
    account_id       BIGINT NOT NULL REFERENCES accounts (id),
    name             TEXT NOT NULL,
    token_hash       BYTEA NOT NULL UNIQUE,
    token_expires_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX devices_account ON devices (account_id);

-- One-time codes, kept for a day after issue so that rate limits can count them.
CREATE TABLE auth_codes (
    id         BIGSERIAL PRIMARY KEY,
    phone_key  BYTEA NOT NULL,
    client_key BYTEA NOT NULL,
    code_hash  BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX auth_codes_phone ON auth_codes (phone_key, created_at);
CREATE INDEX auth_codes_client ON auth_codes (client_key, created_at);

CREATE TABLE tickets (
    ticket_hash BYTEA PRIMARY KEY,
    account_id  BIGINT NOT NULL,
    device_id   BIGINT NOT NULL REFERENCES devices (id),
    expires_at  BIGINT NOT NULL
);

-- Written only by the development notifier.
CREATE TABLE dev_codes (
    id         BIGSERIAL PRIMARY KEY,
    phone      TEXT NOT NULL,
    code       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX dev_codes_phone ON dev_codes (phone, id);

CREATE TABLE documents (
    id         BYTEA PRIMARY KEY,
    owner      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX documents_owner ON documents (owner, created_at);

-- Content-addressed, append-only chunks; seq is store-wide. Inserts into one document are
-- serialized by an advisory lock so that seq order is commit order within a document.
CREATE TABLE chunks (
    seq    BIGSERIAL PRIMARY KEY,
    doc_id BYTEA NOT NULL,
    hash   BYTEA NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('snapshot', 'incremental')),
    bytes  BYTEA NOT NULL,
    UNIQUE (doc_id, hash)
);
CREATE INDEX chunks_doc_seq ON chunks (doc_id, seq);
