"""The peer of benchmark (c): Alibaba's `dashscope` SDK scripted the way its users do — a thread pool; per image
`ImageGeneration.async_call`, `wait`, download, write, SHA-256.

Run as its own process by `bench_scale.py sdk`, which times it from start to exit, as `generate` is timed: a
user runs either as one command, interpreter start and imports included. It prints the seconds its pool took
(the loop alone) as JSON, so both figures can be reported.

Usage: python benchmarks/sdk_peer.py BASE_URL N WORKERS OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dashscope
from dashscope.aigc.image_generation import ImageGeneration

KEY = "sk-bench"
MODEL = "wan2.7-image"


def main(base: str, n: int, workers: int, out_dir: Path) -> None:
    dashscope.base_http_api_url = f"{base}/api/v1"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def one(i: int) -> str:
        messages = [{"role": "user", "content": [{"text": f"A study of light number {i}, film grain"}]}]
        created = ImageGeneration.async_call(model=MODEL, api_key=KEY, messages=messages, size="1K", n=1, seed=i)
        done = ImageGeneration.wait(created, api_key=KEY)
        url = done.output.choices[0].message.content[0]["image"]
        with opener.open(url, timeout=60) as resp:
            data = resp.read()
        (out_dir / f"{i}.png").write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(n)))
    print(json.dumps({"loop_s": time.perf_counter() - start}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
