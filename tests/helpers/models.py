"""A tiny BERT built from a config, with a WordPiece tokenizer trained here (no hub downloads),
and a learnable sentiment task for it."""

import numpy as np
import pandas as pd

POS = ["great", "good", "love", "excellent", "happy", "fast"]
NEG = ["bad", "awful", "hate", "terrible", "sad", "slow"]
FILLER = ["the", "service", "was", "and", "delivery", "product", "very", "a", "it"]


def sentiment(n: int, seed: int = 0) -> pd.DataFrame:
    """A learnable task: the label is which word list the review draws from."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, 4)) + list(rng.choice(POS if label else NEG, 2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "pos" if label else "neg"})
    return pd.DataFrame(rows)


def build_tiny_bert(path) -> str:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        [" ".join(POS + NEG + FILLER)] * 10, trainers.WordPieceTrainer(vocab_size=200, special_tokens=special)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    BertTokenizerFast(tokenizer_object=tok).save_pretrained(path)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
    return str(path)


def build_tiny_gpt2(path) -> str:
    """A 2-layer GPT-2 with a word-level tokenizer trained here (eos doubles as pad)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = [
        "Q:",
        "A:",
        "what",
        "is",
        "the",
        "capital",
        "of",
        "color",
        "sky",
        "grass",
        "france",
        "paris",
        "blue",
        "green",
        "spain",
        "madrid",
        "italy",
        "rome",
    ]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator([" ".join(words)] * 3, trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]))
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>", model_max_length=64
    ).save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        eos_token_id=tok.token_to_id("<eos>"),
        bos_token_id=tok.token_to_id("<eos>"),
    )
    GPT2LMHeadModel(config).save_pretrained(path, safe_serialization=True)
    return str(path)


QA = [
    ("what is the capital of france", "paris"),
    ("what is the capital of spain", "madrid"),
    ("what is the capital of italy", "rome"),
    ("what is the color of the sky", "blue"),
    ("what is the color of the grass", "green"),
]
