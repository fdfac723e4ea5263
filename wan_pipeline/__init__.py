"""wan-pipeline: reproducible Wan 2.7 image and video datasets, orchestrated with Dagster.

Layers, bottom to top; a module imports only from its own layer and the layers below it
(docs/architecture.md draws them):

- ``errors``       the error vocabulary every layer speaks (DESIGN §9)
- ``code_version`` which code is running: package version + git commit (lineage provenance)
- ``providers/``   what a host understands: neutral parameters, sizes, the model catalog, one sans-I/O
                   module per wire protocol
- ``planning/``    what to make: the spec, the prompt table, seeds, fingerprints, the plan
- ``money/``       what was paid for: the durable ledger, budget admission
- ``outputs/``     what was delivered: storage backends, media verification, lineage, audits, status
- ``execution/``   how it runs: the async task engine (all network I/O), the wire, endpoints, sessions
- ``emulator/``    the provider emulator; production code reaches it only through
                   ``execution.endpoints`` (the ``endpoint: emulator`` transport) and the CLI command
- ``assets/``, ``resources/``, ``definitions.py``  the Dagster layer: thin translations of a spec into assets
- ``cli/``         the ``wan-pipeline`` command, a client of the Dagster layer
"""

__version__ = "0.1.0"

# `wan_pipeline.WanDataset` is the component type `dg` finds through the `dagster_dg_cli.registry_modules`
# entry point. Exported lazily: the core layers, the emulator and the CLI import this package without Dagster.
__all__ = ["WanDataset", "__version__"]


def __getattr__(name: str) -> object:
    if name == "WanDataset":
        from wan_pipeline.component import WanDataset

        return WanDataset
    raise AttributeError(f"module 'wan_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "WanDataset"])
