-- Sotong phone store, schema version 1.
-- Times are milliseconds since the Unix epoch (UTC).

-- This install's registration with a server; at most one row.
CREATE TABLE account (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    server_url       TEXT    NOT NULL,
    account_id       INTEGER NOT NULL,
    device_id        INTEGER NOT NULL,
    token            TEXT    NOT NULL,
    token_expires_at INTEGER NOT NULL,
    registered_at    INTEGER NOT NULL
);

-- Facts about this install; exactly one row, written when the database is first opened.
CREATE TABLE device (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    -- This phone's automerge-repo peer id: random, stable for the life of the install.
    peer_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- One row per Automerge document (draft) the phone knows.
CREATE TABLE documents (
    doc_id     BLOB    PRIMARY KEY CHECK (length(doc_id) = 16),
    -- The schema kind ('proposal', ...); '' while not yet known (a document arriving by sync).
    kind       TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- A document's content as content-addressed chunks: snapshots (kind 0, `save()`) and
-- incremental changes (kind 1, `save_after()`), keyed by the SHA-256 of their bytes.
-- Chunks are only ever added, and compaction deletes only chunks it has folded into a new
-- snapshot, so concurrent writers cannot lose each other's changes.
CREATE TABLE doc_chunks (
    doc_id BLOB    NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    kind   INTEGER NOT NULL CHECK (kind IN (0, 1)),
    bytes  BLOB    NOT NULL,
    PRIMARY KEY (doc_id, hash)
); -- a rowid table: WITHOUT ROWID suits small rows, and chunks can be large

-- Automerge sync state per (document, peer), as `sync::State::encode()`.
CREATE TABLE sync_states (
    doc_id BLOB NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    peer   TEXT NOT NULL,
    state  BLOB NOT NULL,
    PRIMARY KEY (doc_id, peer)
) WITHOUT ROWID;
