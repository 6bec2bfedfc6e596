-- The signature database version each verdict was made with (issue 10).
ALTER TABLE messages ADD COLUMN signatures TEXT NOT NULL DEFAULT '';
