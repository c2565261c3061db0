"""Times llama.cpp (llama-cpp-python) the way `modelfactory bench generate` times our runtime.

Usage: python llama_cpp_bench.py MODEL.gguf THREADS PROMPT_TOKENS GENERATED_TOKENS REPEATS
Prints one JSON object: prefill and decode tokens/s (best of REPEATS) and peak resident memory.
The prompt is the same fixed token sequence our benchmark uses; decoding is greedy, one token
per evaluation, as in a chat.
"""

import json
import sys
import time

import llama_cpp
import numpy as np


def main():
    model, threads, prompt_n, gen_n, repeats = sys.argv[1], *map(int, sys.argv[2:6])
    llm = llama_cpp.Llama(
        model_path=model,
        n_ctx=prompt_n + gen_n + 8,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=max(prompt_n, 32),
        logits_all=False,
        verbose=False,
    )
    vocab = llm.n_vocab()
    # The same deterministic prompt as the Rust side: ids 1000, 1007, 1014, ... modulo vocab.
    prompt = [(1000 + 7 * i) % vocab for i in range(prompt_n)]
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prefill = time.perf_counter() - start
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))
        token = int(np.argmax(logits))
        start = time.perf_counter()
        for _ in range(gen_n):
            llm.eval([token])
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))
            token = int(np.argmax(logits))
        decode = time.perf_counter() - start
        best_prefill = max(best_prefill, prompt_n / prefill)
        best_decode = max(best_decode, gen_n / decode)
    # VmHWM belongs to this process image; ru_maxrss would carry over the parent's peak
    # across exec on Linux.
    with open("/proc/self/status") as status:
        peak_kib = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
                "prefill_tokens_per_s": best_prefill,
                "decode_tokens_per_s": best_decode,
                "peak_rss_bytes": peak_kib * 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
