-- DNS records the gateway created for the tunnel (proxied CNAMEs to <tunnel-id>.cfargotunnel.com).
-- Only records listed here are ever changed by the gateway; others in the zone are left alone.

CREATE TABLE tunnel_dns_records (
    record_id   text PRIMARY KEY,
    zone_id     text NOT NULL,
    hostname    text NOT NULL,
    content     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tunnel_dns_records_hostname ON tunnel_dns_records (hostname);
