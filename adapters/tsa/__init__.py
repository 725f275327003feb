"""A time-stamp authority (RFC 3161) and a client for one."""
