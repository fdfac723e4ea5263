"""What was paid for: the durable ledger of attempts and task ids, and budget admission (DESIGN §9); and the
limits every run on one provider account shares through the ledger's database (DESIGN §11).

`ledger` (the contract) on `database` (SQLite or PostgreSQL) with versioned `migrations`; `location` decides
where it lives; `budget` admits; `records` shapes rows; `leases` (concurrency) and `rate` (submit pacing).

May import: ``errors``, ``providers``, ``planning``.
"""
