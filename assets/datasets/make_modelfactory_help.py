#!/usr/bin/env python3
"""Writes modelfactory-help.jsonl (training rows) and heldout/modelfactory-help.jsonl (questions
kept out of training, to see whether a fine-tuned model generalises).

The content is written for this project (Apache-2.0, like the code): a help desk for
ModelFactory itself, facts a base model cannot know. Each fact is asked several ways; the
first phrasings train, the last one (where there is one) is held out. Rows carry a
contributor address and a contribution id (sha256 of the canonical row), as Datanet rows do.

Run: python3 assets/datasets/make_modelfactory_help.py
"""
import hashlib
import json
import os

CONTRIBUTORS = [
    "0x1111111111111111111111111111111111111111",
    "0x2222222222222222222222222222222222222222",
    "0x3333333333333333333333333333333333333333",
]

# (training phrasings, held-out phrasing or None, answer)
FACTS = [
    (["What is ModelFactory?", "What does ModelFactory do?", "Tell me what ModelFactory is for.", "Explain ModelFactory in one sentence."],
     "What kind of program is ModelFactory?",
     "ModelFactory is a desktop studio for fine-tuning small open language models with LoRA or QLoRA on your own machine, and for publishing the adapter with a signed record of the data that trained it."),
    (["What is a Datanet?", "What does Datanet mean in ModelFactory?", "Explain what a Datanet is.", "What is a Datanet made of?"],
     "Can you describe a Datanet?",
     "A Datanet is a community dataset: a repository of Parquet shards in which every row records its contribution id and its contributor, so the people whose data trains a model can be credited."),
    (["What is the difference between LoRA and QLoRA?", "How does QLoRA differ from LoRA?", "LoRA or QLoRA, what changes?", "Why would I pick QLoRA over LoRA?"],
     "What does QLoRA do differently from LoRA?",
     "LoRA trains small low-rank matrices beside frozen base weights; QLoRA trains the same matrices but keeps the frozen base weights in 4-bit NF4, which cuts their memory about seven times."),
    (["How do I resume a training run?", "My run stopped. How do I continue it?", "Can I continue an interrupted run?", "How do I pick up a cancelled run where it left off?"],
     "How can I restart a run from where it stopped?",
     "Open Fine-tune, select the run in the Runs list and press Resume: ModelFactory continues from the last checkpoint. In a terminal, run modelfactory train --resume with the run id."),
    (["How do I stop a training run?", "How can I cancel a run?", "What happens when I press Cancel?", "Can I stop training early?"],
     None,
     "Press Cancel on the dashboard. The run stops after the current sequence and keeps its best checkpoint as the adapter, so nothing trained so far is lost."),
    (["Which files make up an adapter?", "What files does ModelFactory export for an adapter?", "In what format are adapters saved?", "What does an adapter folder contain?"],
     "What is inside the adapter folder ModelFactory writes?",
     "An adapter is adapter_model.safetensors and adapter_config.json in the Hugging Face PEFT layout, so PEFT, vLLM and llama.cpp's converter can load it."),
    (["What is the default model?", "Which model does ModelFactory use by default?", "What model comes with ModelFactory?", "Which base model is preinstalled?"],
     None,
     "The default model is SmolLM2-135M-Instruct, a small Apache-2.0 model that runs on any laptop."),
    (["What does the LoRA rank mean?", "What is the rank setting?", "Should I raise the rank?", "What does rank control in LoRA?"],
     "How does the rank affect training?",
     "The rank is the width of the LoRA matrices: a higher rank can learn more but trains more numbers. Rank 16 is a good default."),
    (["What does alpha do?", "What is LoRA alpha?", "How should I set alpha?", "What is the alpha setting for?"],
     None,
     "Alpha scales the adapter's update by alpha divided by the rank; the presets use an alpha of twice the rank."),
    (["What is the eval loss?", "Why is there an eval loss curve?", "What does eval loss tell me?", "How do I read the eval loss?"],
     "What is the eval loss on the dashboard?",
     "The eval loss is the average loss on rows held out from training. When it stops falling while the training loss keeps falling, the model has started to memorise."),
    (["Which dataset formats can I use?", "What file formats does ModelFactory read?", "Can I train on a CSV file?", "Which formats are supported for training data?"],
     None,
     "ModelFactory reads JSONL in alpaca, sharegpt or chatml messages form, JSON arrays, CSV, TSV and Parquet."),
    (["Where are my runs stored?", "Where does ModelFactory keep checkpoints?", "In which folder are runs saved?", "Where do the adapters of my runs go?"],
     None,
     "Runs live in the workspace under runs/, one folder per run with its checkpoints and its adapter."),
    (["How do I merge an adapter into the base model?", "Can I merge my adapter?", "How do I get a merged model?", "How do I export a merged model?"],
     "How can I combine the adapter with its base model?",
     "Run modelfactory runs merge with the run id and --out followed by a folder; ModelFactory writes the merged model as safetensors with its tokenizer."),
    (["How do I chat with my adapter?", "How can I test my fine-tuned model?", "Where can I try the adapter?", "How do I compare the adapter with the base model?"],
     "How do I talk to the model I just trained?",
     "In the Runs list press Chat with this adapter; the Chat screen can show the base model and the adapter side by side."),
    (["Which hardware does ModelFactory run on?", "Does ModelFactory need a GPU?", "Which backends are supported?", "Can I train without a GPU?"],
     None,
     "ModelFactory runs on the CPU everywhere, on any GPU through wgpu, and on NVIDIA GPUs through CUDA."),
    (["What presets are there?", "What do the presets mean?", "Which preset should I choose?", "What is the Balanced preset?"],
     None,
     "Quick trains rank 8 for one epoch, Balanced rank 16 for two epochs, and Thorough rank 32 for three epochs at a lower learning rate."),
    (["What is packing?", "Should I turn on packing?", "What does the packing option do?", "Why pack examples?"],
     None,
     "Packing joins short examples end to end into full-length sequences, so each step trains on more tokens."),
    (["Which tokens are trained?", "Does ModelFactory train on the user's messages?", "What part of a conversation is learned?", "Is the prompt part of the loss?"],
     "Which parts of a conversation does the model learn from?",
     "ModelFactory trains only on what the assistant says, end-of-turn token included, so the model learns when to stop."),
    (["Can I check my data before training?", "How do I see how my rows will be used?", "What does the preview show?", "How do I know the chat template is right?"],
     None,
     "Before a run starts, the wizard shows the first rows rendered with the model's chat template, with the trained spans highlighted."),
    (["What learning rate does ModelFactory use?", "What is the default learning rate?", "Which learning rate schedule is used?", "How is the learning rate scheduled?"],
     None,
     "The default learning rate is 2e-4 with a cosine schedule after a short warm-up."),
    (["What is the lineage manifest?", "What does the lineage manifest record?", "What is published with an adapter?", "What is a lineage manifest for?"],
     "What information does the lineage manifest hold?",
     "The lineage manifest is a signed JSON record of the base model, the adapter's files and hashes, every training setting and every contribution that trained the adapter."),
    (["What is gradient checkpointing?", "Should I use gradient checkpointing?", "What does gradient checkpointing cost?", "How does gradient checkpointing save memory?"],
     None,
     "Gradient checkpointing recomputes activations in the backward pass instead of storing them: less memory, at the cost of more time."),
    (["What does the seed do?", "Why set a seed?", "Will the same settings give the same adapter?", "How do I make a run repeatable?"],
     "Can I reproduce a training run exactly?",
     "The seed fixes the adapter's initialisation, the order of the data and the dropout, so the same seed and settings repeat the same run."),
    (["What does modelfactory doctor do?", "How do I check my setup?", "How do I find out which backends work?", "Is there a command to diagnose problems?"],
     None,
     "modelfactory doctor checks the machine: which backends are compiled in and work, the workspace, and the models."),
    (["How do I open ModelFactory in a browser?", "Can I use ModelFactory from a browser?", "What does modelfactory serve do?", "How do I use the studio on a remote machine?"],
     None,
     "modelfactory serve starts the studio and its API over HTTP, at 127.0.0.1 port 8765 by default; open that address in a browser."),
    (["What happens to bad rows in my dataset?", "My dataset has broken lines. What happens?", "Does one bad row stop training?", "How are malformed rows handled?"],
     "What does ModelFactory do with rows it cannot read?",
     "ModelFactory skips bad rows and lists each one with its line number; the good rows are kept and trained on."),
    (["What if my computer crashes during training?", "What happens if the process is killed?", "Can a crash corrupt my checkpoints?", "Is my run lost after a power cut?"],
     None,
     "The run resumes from its last checkpoint. Checkpoints are written to a temporary folder and renamed into place, so none is ever half written."),
    (["Where is the workspace folder?", "How do I use another workspace?", "Where does ModelFactory keep its data?", "Can I move the workspace?"],
     None,
     "The workspace lives in your user data folder; --home or the MODELFACTORY_HOME variable choose another one."),
    (["How much memory do QLoRA base weights take?", "How small are NF4 weights?", "How much memory does QLoRA save?", "What is the size of NF4 weights?"],
     None,
     "In NF4 the base weights take about 0.52 bytes per weight instead of 4 bytes in f32."),
    (["Who is credited for an adapter?", "How are contributors credited?", "Do data contributors get credit?", "How does ModelFactory credit contributors?"],
     "Who gets credit when an adapter is published?",
     "Every contributor whose rows trained the adapter is listed in the lineage manifest with their share, so they can be credited and paid."),
]


def row(question, answer, contributor):
    content = {"instruction": question, "input": "", "output": answer}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        **content,
        "contributor": contributor,
        "contribution_id": hashlib.sha256(canonical.encode()).hexdigest(),
        "license": "Apache-2.0",
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    train, heldout = [], []
    for i, (questions, held, answer) in enumerate(FACTS):
        for j, q in enumerate(questions):
            train.append(row(q, answer, CONTRIBUTORS[(i + j) % len(CONTRIBUTORS)]))
        if held:
            heldout.append({"instruction": held, "input": "", "output": answer})
    os.makedirs(os.path.join(here, "heldout"), exist_ok=True)
    for name, rows in [("modelfactory-help.jsonl", train), ("heldout/modelfactory-help.jsonl", heldout)]:
        with open(os.path.join(here, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(train)} training rows, {len(heldout)} held-out questions")


if __name__ == "__main__":
    main()
