"""Wire models of lienthong: the contract between agency systems and the bus.

Nothing here imports the rest of lienthong. The envelope header (``schemas.header``) is the part
that is signed; its exact bytes travel and are verified, never a re-serialisation of these models.
"""
