-- Health history as changes and minutes (issue 27), as Uptime Kuma 2.0 moved from reading every
-- heartbeat to aggregate tables.
--
-- Before: a row per check per server every interval (health_samples, 8,640 rows a day per
-- server at 10 s). Now:
-- - health_changes: a row only when a server's result changes (up -> down, down -> up, a new
--   error while down), and the first result of each gateway run; kept like the hourly rollups.
-- - health_minutes: one row per server per minute: checks, failures, and the min / average / max
--   of the checks that measured a response time (`timed` of them); kept 26 h (the 1 h and 24 h
--   charts), folded into health_hourly (availability, the 7 d chart) by the rollup.
-- The gateway counts a minute in memory and writes it once the minute is over (or at a clean
-- stop); `run` names the gateway run that wrote it, so two runs within one minute add up and a
-- replayed write lands once.

CREATE TABLE health_minutes (
    server       text NOT NULL,
    minute       timestamptz NOT NULL,
    checks       integer NOT NULL,
    failures     integer NOT NULL,
    timed        integer NOT NULL DEFAULT 0,   -- checks with a measured response time
    latency_min  real,
    latency_avg  real,
    latency_max  real,
    last_at      timestamptz NOT NULL,         -- the last check counted (where a run ended)
    run          text NOT NULL DEFAULT '',
    PRIMARY KEY (server, minute)
);
CREATE INDEX health_minutes_minute ON health_minutes (minute);

-- the raw checks kept so far become minutes ...
INSERT INTO health_minutes (server, minute, checks, failures, timed, latency_min, latency_avg, latency_max,
                            last_at, run)
SELECT server, date_trunc('minute', at), count(*), count(*) FILTER (WHERE NOT ok), count(latency_ms),
       min(latency_ms), avg(latency_ms), max(latency_ms), max(at), 'migrated'
  FROM health_samples GROUP BY 1, 2;

-- ... and only the rows where the result changed stay
DELETE FROM health_samples s
 USING (SELECT server, at, ok, error,
               lag(ok) OVER w AS was_ok, lag(error) OVER w AS was_error, row_number() OVER w AS n
          FROM health_samples WINDOW w AS (PARTITION BY server ORDER BY at)) p
 WHERE s.server = p.server AND s.at = p.at AND p.n > 1
   AND p.was_ok = p.ok AND (p.ok OR p.was_error IS NOT DISTINCT FROM p.error);

ALTER TABLE health_samples RENAME TO health_changes;
ALTER INDEX health_samples_at RENAME TO health_changes_at;
ALTER INDEX health_samples_pkey RENAME TO health_changes_pkey;
