"""What was delivered: storage backends (local disk, S3), media verification, the lineage Parquet, the audits
behind the asset checks, and per-output status (DESIGN §8).

May import: ``errors``, ``providers``, ``planning``, ``money``.
"""
