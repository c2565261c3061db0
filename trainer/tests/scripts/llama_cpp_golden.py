#!/usr/bin/env python3
"""Golden values from llama.cpp (through llama-cpp-python) for the default model.

Writes trainer/tests/golden/llama_cpp/smollm2-135m-instruct-q4_1.json: token ids of a set
of texts, next-token logits after a set of prompts (the 64 largest and a fixed stride of the
rest), and the first 32 greedy tokens after each chat prompt. The Rust tests in
trainer/tests/it/llama_cpp.rs compare our runtime against it.

Run (about 10 minutes the first time, to build llama.cpp):
    python3 -m venv venv && venv/bin/pip install llama-cpp-python numpy
    venv/bin/python trainer/tests/scripts/llama_cpp_golden.py MODEL.gguf OUT.json
"""

import hashlib
import json
import sys

import llama_cpp
import numpy as np

TOKENIZER_TEXTS = [
    "Hello, world!",
    "The capital of France is Paris.",
    "  leading spaces and    runs of   spaces  ",
    "tabs\tand\nnew\n\nlines\r\n",
    "Ünïcödé: naïve café, 東京, Москва, emoji 🙂🚀",
    "def add(a, b):\n    return a + b  # sum\n",
    "fn main() { println!(\"{}\", 12345 * 678); }",
    "Numbers 3.14159 and 1,000,000 and 2024-11-23",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "don't, can't, we'll, they're, I'd, it's",
]

CHAT_PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
]

RAW_PROMPTS = [
    "The quick brown fox jumps over the lazy",
    "def fibonacci(n):\n    ",
]

GREEDY_TOKENS = 32
TOP = 64
STRIDE = 997


def main():
    model_path, out_path = sys.argv[1], sys.argv[2]
    llm = llama_cpp.Llama(
        model_path=model_path,
        n_ctx=1024,
        n_threads=2,
        n_batch=512,
        logits_all=True,
        verbose=False,
        seed=0,
    )
    template = llm.metadata.get("tokenizer.chat_template")
    from jinja2 import Environment

    env = Environment()
    env.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(Exception(m))
    chat = env.from_string(template)

    def tokenize(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def logits_after(ids):
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[len(ids) - 1], dtype=np.float64)

    def summary(logits):
        order = np.argsort(-logits, kind="stable")
        top = [int(i) for i in order[:TOP]]
        strided = list(range(0, len(logits), STRIDE))
        return {
            "argmax": int(order[0]),
            "top_ids": top,
            "top_values": [float(logits[i]) for i in top],
            "strided_ids": strided,
            "strided_values": [float(logits[i]) for i in strided],
        }

    def greedy(ids):
        """The greedy tokens, and at each step the gap between the two best logits: where
        it is tiny, another correct implementation may take the other token."""
        llm.reset()
        out, margins = [], []
        llm.eval(list(ids))
        for _ in range(GREEDY_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1])
            top2 = np.sort(logits)[-2:]
            nxt = int(np.argmax(logits))
            out.append(nxt)
            margins.append(float(top2[1] - top2[0]))
            if nxt == llm.token_eos():
                break
            llm.eval([nxt])
        return out, margins

    prompts = []
    for messages in CHAT_PROMPTS:
        text = chat.render(messages=messages, add_generation_prompt=True)
        ids = tokenize(text)
        tokens, margins = greedy(ids)
        prompts.append(
            {
                "messages": messages,
                "text": text,
                "ids": ids,
                "logits": summary(logits_after(ids)),
                "greedy": tokens,
                "greedy_margins": margins,
            }
        )
    for text in RAW_PROMPTS:
        ids = tokenize(text)
        tokens, margins = greedy(ids)
        prompts.append(
            {
                "text": text,
                "ids": ids,
                "logits": summary(logits_after(ids)),
                "greedy": tokens,
                "greedy_margins": margins,
            }
        )

    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    golden = {
        "producer": f"llama-cpp-python {llama_cpp.__version__}, n_threads=2, CPU",
        "model_sha256": sha,
        "tokenizer": [{"text": t, "ids": tokenize(t)} for t in TOKENIZER_TEXTS],
        "prompts": prompts,
    }
    with open(out_path, "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
