"""The core of lienthong: envelopes, signing, verification, trust, timestamps and routing.

Nothing in this package imports a web framework, a broker client, a database library or the
environment; adapters bring those in through the ports in ``exchange.ports``.
"""
