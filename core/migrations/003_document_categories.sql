-- Schema version 3: the draft list shows each draft's category without loading it.

-- The document's root `category` string as of its last save from this phone (NULL until then
-- or when it has none).
ALTER TABLE documents ADD COLUMN category_cache TEXT;
