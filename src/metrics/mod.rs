//! Metrics: snowflake-stats descriptors, Prometheus text, IP scrubbing.
