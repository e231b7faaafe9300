-- Host samples, and hourly rollups of the per-server samples.
--
-- Raw samples (health checks, per-server CPU/RSS and host figures every 10 s) are kept for
-- 26 hours; the hourly rollups for 400 days. For 50 servers that is 175 MB at steady state
-- (92 MB of hourly rows, 83 MB of raw samples; measured by bench/samples_size.py).

CREATE TABLE host_samples (
    at              timestamptz PRIMARY KEY,
    cpu_percent     real,
    mem_percent     real,
    disk_percent    real,
    disk_free_bytes bigint,
    battery_percent real,
    on_ac           boolean,
    internet_ok     boolean
);

CREATE TABLE health_hourly (
    server      text NOT NULL,
    hour        timestamptz NOT NULL,
    checks      integer NOT NULL,
    ok          integer NOT NULL,
    latency_avg real,
    latency_max real,
    PRIMARY KEY (server, hour)
);

CREATE TABLE resource_hourly (
    server      text NOT NULL,
    hour        timestamptz NOT NULL,
    samples     integer NOT NULL,
    cpu_avg     real,
    cpu_max     real,
    rss_avg     bigint,
    rss_max     bigint,
    PRIMARY KEY (server, hour)
);
