-- Each console user's language (ja or en; empty: the browser's Accept-Language).
ALTER TABLE console_users ADD COLUMN lang TEXT NOT NULL DEFAULT '';
