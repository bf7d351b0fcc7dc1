-- Campaign settings: stop conditions, sending window and required custom
-- fields, as one JSON object. Campaigns written before this column read
-- back with the default settings.
ALTER TABLE campaigns ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
