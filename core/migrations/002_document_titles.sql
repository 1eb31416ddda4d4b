-- Schema version 2: list drafts without loading their Automerge documents.

-- The document's root `title` text as of its last save from this phone (NULL until then or
-- when it has none), so the draft list does not have to load every document.
ALTER TABLE documents ADD COLUMN title_cache TEXT;

-- The draft list is ordered by last update, newest first.
CREATE INDEX documents_by_updated_at ON documents (updated_at DESC);
