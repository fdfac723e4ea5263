#!/usr/bin/env bash
# One command: install, then generate the example dataset on the in-process Rivya emulator,
# recording into the Dagster instance that `wan-pipeline ui` opens (DAGSTER_HOME, default ~/.wan_pipeline/dagster_home).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
wan-pipeline validate examples/demo.yaml
wan-pipeline estimate examples/demo.yaml
wan-pipeline generate examples/demo.yaml "$@"
wan-pipeline lineage examples/demo.yaml
wan-pipeline report examples/demo.yaml   # the gallery: open the printed path in a browser
