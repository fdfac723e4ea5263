"""What was paid for: the durable ledger of attempts and task ids, and budget admission (DESIGN §9).

May import: ``errors``, ``providers``, ``planning``.
"""
