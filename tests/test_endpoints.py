"""execution/endpoints.py: which host and key a spec talks to (DESIGN §6), and the one door to the emulator.

The variable names are the README's contract with the user ("<PROVIDER>_API_KEY", "<PROVIDER>_BASE_URL"),
so they are spelled out here rather than read from the adapters.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from conftest import write_dataset

from wan_pipeline.errors import ConfigError
from wan_pipeline.execution.endpoints import (
    EMULATOR_TOKEN,
    emulator_config_for,
    in_process_emulator,
    resolve_endpoint,
    state_dir,
)
from wan_pipeline.execution.wire import Wire
from wan_pipeline.planning.plan import build_plan
from wan_pipeline.planning.spec import DatasetSpec, load_spec
from wan_pipeline.providers.registry import get_provider

PROVIDERS = {
    "rivya": ("wan-2-7-image", "https://rivya.ai"),
    "evolink": ("wan-2.7-image", "https://api.evolink.ai"),
    "reapi": ("wan2.7-image", "https://reapi.ai"),
    "runware": ("alibaba:wan@2.7-image", "https://api.runware.ai"),
    "dashscope": ("wan2.7-image", "https://dashscope-intl.aliyuncs.com"),
}
ROWS = [{"prompt_id": "a", "prompt": "A lighthouse"}]


def spec_for(directory: Path, provider: str, **fields: object) -> DatasetSpec:
    model = PROVIDERS[provider][0]
    return load_spec(write_dataset(directory, ROWS, name=f"ep_{provider}", provider=provider, model=model, **fields))


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_real_host_needs_the_providers_key_variable(e2e_env: Path, provider: str) -> None:
    spec = spec_for(e2e_env, provider)
    variable = f"{provider.upper()}_API_KEY"
    with pytest.raises(ConfigError, match=f"set the environment variable {variable}"):
        resolve_endpoint(spec, {})
    endpoint = resolve_endpoint(spec, {variable: "sk-1"})
    assert endpoint.base_url == get_provider(provider).default_base.rstrip("/")
    assert endpoint.base_url.startswith(PROVIDERS[provider][1])
    assert (endpoint.api_key, endpoint.in_process) == ("sk-1", False)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_base_url_variable_wins_over_the_spec_and_the_default(e2e_env: Path, provider: str) -> None:
    spec = spec_for(e2e_env, provider, endpoint="emulator")
    env = {f"{provider.upper()}_BASE_URL": "http://127.0.0.1:8765/x/", f"{provider.upper()}_API_KEY": "k"}
    endpoint = resolve_endpoint(spec, env)
    assert (endpoint.base_url, endpoint.in_process) == ("http://127.0.0.1:8765/x", False)


def test_the_spec_endpoint_is_used_when_no_variable_names_one(e2e_env: Path) -> None:
    spec = spec_for(e2e_env, "rivya", endpoint="https://proxy.example/rivya/")
    assert resolve_endpoint(spec, {"RIVYA_API_KEY": "k"}).base_url == "https://proxy.example/rivya"


def test_a_base_url_must_be_http(e2e_env: Path) -> None:
    spec = spec_for(e2e_env, "rivya")
    with pytest.raises(ConfigError, match=r"\$RIVYA_BASE_URL must be an http\(s\) base URL"):
        resolve_endpoint(spec, {"RIVYA_BASE_URL": "ftp://x", "RIVYA_API_KEY": "k"})


def test_the_emulator_needs_no_key_and_a_given_key_is_used(e2e_env: Path) -> None:
    spec = spec_for(e2e_env, "rivya", endpoint="emulator")
    endpoint = resolve_endpoint(spec, {})
    assert (endpoint.in_process, endpoint.api_key, endpoint.describe()) == (True, EMULATOR_TOKEN, "in-process emulator")
    assert resolve_endpoint(spec, {"RIVYA_API_KEY": "mine"}).api_key == "mine"


def test_the_key_never_shows_in_an_endpoints_repr(e2e_env: Path) -> None:
    endpoint = resolve_endpoint(spec_for(e2e_env, "rivya"), {"RIVYA_API_KEY": "sk-secret-123"})
    assert "sk-secret-123" not in repr(endpoint)


def test_the_emulators_state_lives_beside_the_ledger_and_takes_overrides(e2e_env: Path) -> None:
    spec = spec_for(e2e_env, "rivya", endpoint="emulator")
    env = {"WAN_PIPELINE_STATE_DIR": str(e2e_env / "st"), "WAN_PIPELINE_EMULATOR": json.dumps({"queue_s": 7})}
    config = emulator_config_for(spec, env)
    assert config.state_path == str(state_dir(spec, env) / "emulator_state.json")
    assert Path(config.state_path).parent == e2e_env / "st" / spec.name
    assert config.queue_s == 7


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_the_in_process_emulator_speaks_the_specs_protocol(e2e_env: Path, provider: str) -> None:
    spec = spec_for(e2e_env, provider, endpoint="emulator", params={"aspect_ratio": "1:1", "resolution": "1K"})
    base_url, transport = in_process_emulator(spec)
    assert base_url == resolve_endpoint(spec, {}).base_url
    adapter = get_provider(provider)
    (task,) = build_plan(spec).tasks
    call = adapter.submit(task.request(), task.idempotency_key(1))
    async with httpx.AsyncClient(transport=transport) as client:
        reply = await Wire(client, base_url, adapter.auth_headers(EMULATOR_TOKEN)).send(call)
    assert reply.status == 200
    assert adapter.accepted(reply).task_id
    assert Path(emulator_config_for(spec).state_path or "").is_file()  # it persisted the task beside the ledger
