#!/usr/bin/env python3
"""PyTorch + transformers + PEFT as the reference for our LoRA adapters.

  logits       loads a base model with transformers (f32, CPU), wraps it with
               PeftModel.from_pretrained(base, adapter_dir), and writes the logits of the given
               token ids with the adapter and without it as JSON. It first checks that PEFT
               took every tensor of the adapter file, unchanged; --save DIR has PEFT save the
               adapter again (save_pretrained), for our loader to read.
  bench-train  PEFT LoRA training throughput: r=16, alpha=32 on all seven projections, batch
               1, AdamW, on the CPU or a CUDA GPU, with the base in f32 or bf16 (the adapter
               stays f32, PEFT's default); prints tokens/s (after a warm-up step) and peak
               memory as JSON.
  random-model a Hugging Face folder with random weights in the shape of a known model
               (smollm2-135m, qwen2.5-0.5b) and a word-level tokenizer: training speed does
               not depend on the weights' values, and the folder needs no download.

--model is a Hugging Face folder or a GGUF file (which transformers dequantises to f32).
trainer/tests/it/peft.rs runs `logits` (feature `peft-reference`) and writes the goldens in
trainer/tests/golden/peft/ from it. The environment comes from scripts/reference:
    $MODELFACTORY_REFERENCE_PYTHON trainer/tests/scripts/peft_reference.py logits \\
        --model MODEL --adapter ADAPTER_DIR --tokens 1,2,3 --out logits.json
    $MODELFACTORY_REFERENCE_PYTHON trainer/tests/scripts/peft_reference.py bench-train \\
        --model SmolLM2-135M-Instruct.Q4_1.gguf --seq 256 --rank 16 --steps 5 --threads 2
"""

import argparse
import json
import os
import resource
import time

import peft
import safetensors.torch
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def producer(device="cpu", dtype="float32"):
    return (
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"peft {peft.__version__}, {dtype}, {device}"
    )


def load_base(model):
    """A Hugging Face folder, or a GGUF file that transformers dequantises to f32."""
    kwargs = {"dtype": torch.float32}
    if model.endswith(".gguf"):
        folder, name = os.path.split(os.path.abspath(model))
        model, kwargs["gguf_file"] = folder, name
    base = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    return base.to(torch.float32).eval()


def check_adapter_loaded(model, adapter_dir):
    """Every tensor of the adapter file must be in the PEFT model, with the same values."""
    saved = safetensors.torch.load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    params = dict(model.named_parameters())
    for key, value in saved.items():
        # PEFT names its parameters with the adapter's name: `lora_A.default.weight`.
        name = key.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
        if name not in params:
            raise SystemExit(f"PEFT did not load `{key}` (no parameter `{name}`)")
        if not torch.equal(params[name].detach(), value.to(torch.float32)):
            raise SystemExit(f"PEFT loaded `{key}` with different values")
    lora = [n for n in params if ".lora_" in n]
    if len(lora) != len(saved):
        raise SystemExit(f"the model has {len(lora)} LoRA tensors, the file {len(saved)}")
    return len(saved)


def logits(args):
    tokens = [int(t) for t in args.tokens.split(",")]
    ids = torch.tensor([tokens])
    base = load_base(args.model)
    with torch.no_grad():
        base_logits = base(ids).logits[0]
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    loaded = check_adapter_loaded(model, args.adapter)
    with torch.no_grad():
        lora_logits = model(ids).logits[0]
    if args.save:
        model.save_pretrained(args.save)
    with open(os.path.join(args.adapter, "adapter_config.json")) as f:
        config = json.load(f)
    out = {
        "producer": producer(),
        "tokens": tokens,
        "vocab": lora_logits.shape[-1],
        "adapter_tensors": loaded,
        "scaling": next(m.scaling["default"] for m in model.modules() if isinstance(m, LoraLayer)),
        "r": config["r"],
        "logits": lora_logits.tolist(),
        "base_logits": base_logits.tolist(),
    }
    with open(args.out, "w") as f:
        json.dump(out, f)


def bench_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    base = load_base(args.model).to(device=device, dtype=getattr(torch, args.dtype))
    config = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=args.dropout,
        target_modules=TARGETS,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=2e-4
    )
    vocab = model.config.vocab_size
    batch = torch.randint(0, vocab, (1, args.seq), generator=torch.Generator().manual_seed(1))
    batch = batch.to(device)

    def step():
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up: allocations, optimiser state
    losses, step_seconds = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        losses.append(step())
        step_seconds.append(time.perf_counter() - start)
    seconds = sum(step_seconds)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        json.dumps(
            {
                "producer": producer(args.device, args.dtype),
                "model": os.path.basename(args.model.rstrip("/")),
                "seq": args.seq,
                "rank": args.rank,
                "alpha": 2 * args.rank,
                "dropout": args.dropout,
                "targets": TARGETS,
                "threads": args.threads,
                "steps": args.steps,
                "trainable_parameters": trainable,
                "seconds": round(seconds, 3),
                "tokens_per_second": round(args.seq * args.steps / seconds, 2),
                "peak_rss_mib": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                ),
                # What PyTorch's allocator held at most: tensors and its cache, not the CUDA
                # context (`bench train` reads the device's own figure as well).
                "peak_gpu_reserved_mib": (
                    round(torch.cuda.max_memory_reserved() / 2**20, 1)
                    if device.type == "cuda"
                    else None
                ),
                # Other processes on the same cores slow PyTorch's threads down severalfold:
                # uneven step times are the sign.
                "step_seconds": [round(x, 2) for x in step_seconds],
                "losses": [round(x, 4) for x in losses],
            }
        )
    )


SHAPES = {
    # HuggingFaceTB/SmolLM2-135M-Instruct's config.json.
    "smollm2-135m": dict(
        model_type="llama",
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen2.5-0.5B's config.json (q, k and v carry biases in every Qwen2 model).
    "qwen2.5-0.5b": dict(
        model_type="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
}


def random_model(args):
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    shape = dict(SHAPES[args.shape])
    config = transformers.AutoConfig.for_model(shape.pop("model_type"), **shape)
    config.eos_token_id = 2
    config.bos_token_id = 1
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, args.dtype))
    model.save_pretrained(args.out)
    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}, f)
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"shape": args.shape, "parameters": parameters, "out": args.out}))


def add_model_arguments(p):
    p.add_argument("--model", required=True, help="Hugging Face folder or GGUF file")
    p.add_argument("--gguf-file", help="the GGUF file's name inside the --model folder")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("logits", help="logits of token ids with and without a PEFT adapter")
    add_model_arguments(p)
    p.add_argument("--adapter", required=True, help="folder with the PEFT adapter")
    p.add_argument("--tokens", required=True, help="comma-separated token ids")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--save", help="folder where PEFT saves the adapter it loaded")
    p.set_defaults(run=logits)
    p = sub.add_parser("bench-train", help="PEFT LoRA training tokens/s and peak memory")
    add_model_arguments(p)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", help="the base's: float32 or bfloat16")
    p.set_defaults(run=bench_train)
    p = sub.add_parser("random-model", help="a folder with random weights of a known shape")
    p.add_argument("--shape", required=True, choices=sorted(SHAPES))
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    p.set_defaults(run=random_model)
    args = parser.parse_args()
    if getattr(args, "gguf_file", None):
        args.model = os.path.join(args.model, args.gguf_file)
    torch.set_num_threads(getattr(args, "threads", 2))
    args.run(args)


if __name__ == "__main__":
    main()
