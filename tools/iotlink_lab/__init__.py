"""Lab tools for iotlink's own development (`make bench`, `make soak`): benches, the soak run, a
fault-injecting proxy, a throwaway PKI. Not used by the `iotlink` commands."""
