-- What tells a recorded run of a pid apart from a later process with the same pid, unmoved
-- by a setting of the clock (Platform.start_mark; on Linux "boot id:start tick"). NULL where
-- the create time already does that, and in rows written before this column.
ALTER TABLE state ADD COLUMN start_mark text;
