"""A development PKI: a CA hierarchy shaped like a national government CA, kept in a folder."""
