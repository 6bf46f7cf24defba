"""Builds a tiny Idefics3 (SmolVLM-style) model folder entirely offline, for the VLM backend's tests.

Everything is made here: a byte-level BPE tokenizer trained with ``tokenizers`` on a few
sentences (with Idefics3's image special tokens and a SmolVLM chat template), the PIL image
processor, a tiny ``Idefics3Config`` with random weights, all written with ``save_pretrained``.
The result loads through ``AutoProcessor`` + ``AutoModelForImageTextToText`` like a real
checkpoint. Needs torch and transformers: run it with the VLM backend's venv, e.g.::

    .venv-of-vlm/bin/python -c "from tests.support.tiny_vlm import build_tiny_vlm; build_tiny_vlm(Path(d))"
"""

from __future__ import annotations

import sys
from pathlib import Path

#: SmolVLM's chat template: "User:<image>text<end_of_utterance>\nAssistant:".
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    *[f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)],
]

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "User: What is in this picture? Assistant: A cat sitting on a mat.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Describe the image in one sentence, please.",
    "0123456789 hello world, tiny model, random weights!",
]

IMAGE_SIZE = 32  # the vision tower's input: 32x32 pixels
PATCH_SIZE = 8  # 4x4 patches
SCALE_FACTOR = 2  # pixel shuffle: 16 patches -> 4 image tokens
IMAGE_SEQ_LEN = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2


def _train_tokenizer(vocab_size: int = 400) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )


def _config(vocab_size: int, image_token_id: int, pad_token_id: int, eos_token_id: int) -> object:
    from transformers import Idefics3Config

    return Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "pad_token_id": pad_token_id,
            "eos_token_id": eos_token_id,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=image_token_id,
        pad_token_id=pad_token_id,
    )


def build_tiny_vlm(dest: Path, seed: int = 0) -> Path:
    """Write a tiny random-weight Idefics3 model folder to ``dest`` and return it."""
    import torch
    from transformers import AutoModelForImageTextToText, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
        do_image_splitting=True,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IMAGE_SEQ_LEN,
        chat_template=CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids(["<image>", "<|endoftext|>", "<end_of_utterance>"])
    config = _config(len(tokenizer), *ids)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = ids[2]
    model.generation_config.pad_token_id = ids[1]
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


if __name__ == "__main__":
    print(build_tiny_vlm(Path(sys.argv[1])))
