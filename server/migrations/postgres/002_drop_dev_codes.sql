-- Development codes are no longer stored: the development notifier keeps them in memory, so
-- no one-time code or phone number is ever written in plain text.
DROP TABLE IF EXISTS dev_codes;
