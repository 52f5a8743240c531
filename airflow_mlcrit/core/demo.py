"""Demo data: realistic customer messages with sentiment and intent labels and slice attributes
(state, hour, channel), deterministic by seed, with controllable per-slice difficulty and a
"next week" that drifts, so the demo shows a slice regression being caught.

Week 2 differs from week 1 in three ways: the channel mix moves to the app, new slang appears,
and, in the training export only (``broken_phone_labels``), most phone transcripts carry swapped
labels from a broken transcription batch, so a model trained on it learns something wrong
exactly there. Evaluation uses a curated golden set (``golden=True``: correct labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATES = ["California", "Nebraska", "Texas", "New York", "Ohio", "Florida"]
CHANNELS = ["email", "chat", "app", "phone"]
INTENTS = {
    "delivery": ["my order", "the delivery", "the package", "shipping"],
    "billing": ["my invoice", "the charge", "my bill", "the refund"],
    "product": ["the blender", "the headphones", "this jacket", "the app"],
    "support": ["your agent", "customer service", "the support team", "the hotline"],
}
POSITIVE = ["great", "excellent", "fast", "helpful", "love", "perfect", "friendly", "smooth"]
NEGATIVE = ["terrible", "slow", "broken", "rude", "hate", "awful", "late", "useless"]
SLANG_POSITIVE = ["fire", "goated", "slaps"]  # week 2 only
SLANG_NEGATIVE = ["mid", "trash", "cooked"]
FILLER = ["honestly", "today", "again", "this time", "as usual", "for once", "so far", "overall"]
TEMPLATES = [
    "{intent} was {w1}, {f}",
    "{f} {intent} was {w1} and {w2}",
    "I {verb} {intent}, {f}",
    "{intent}: {w1}. {f}",
    "not sure about {intent} but it was {w1}",
]
# how hard each slice is: the share of messages that carry only one sentiment cue among neutral
# words, and (at night) typos
HARD = {"Nebraska": 0.45, "Ohio": 0.3}


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(0, len(word) - 1))
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def customer_messages(n: int, *, week: int = 1, seed: int = 0, broken_phone_labels: float = 0.0) -> Any:
    """A pandas DataFrame of ``n`` messages: message_id, text, label (pos/neg), intent, state,
    channel, ts (UTC, within the given week of November 2026), hour. ``broken_phone_labels`` is
    the share of phone transcripts whose label is swapped (a broken export)."""
    import pandas as pd

    rng = np.random.default_rng(seed * 1000 + week)
    channel_p = [0.3, 0.3, 0.2, 0.2] if week == 1 else [0.15, 0.2, 0.45, 0.2]
    rows = []
    start = pd.Timestamp("2026-11-02", tz="UTC") + pd.Timedelta(days=7 * (week - 1))
    for i in range(n):
        state = STATES[int(rng.integers(0, len(STATES)))]
        channel = CHANNELS[int(rng.choice(len(CHANNELS), p=channel_p))]
        # more traffic by day than at night
        hour = int(rng.choice(24, p=_hour_profile()))
        ts = start + pd.Timedelta(days=int(rng.integers(0, 7)), hours=hour, minutes=int(rng.integers(0, 60)))
        intent = list(INTENTS)[int(rng.integers(0, len(INTENTS)))]
        label = "pos" if rng.random() < 0.5 else "neg"
        pos_words = POSITIVE + (SLANG_POSITIVE if week == 2 else [])
        neg_words = NEGATIVE + (SLANG_NEGATIVE if week == 2 else [])
        cues = pos_words if label == "pos" else neg_words
        hard = rng.random() < HARD.get(state, 0.1) + (0.2 if hour < 6 else 0.0)
        w1 = cues[int(rng.integers(0, len(cues)))]
        w2 = FILLER[int(rng.integers(0, len(FILLER)))] if hard else cues[int(rng.integers(0, len(cues)))]
        if hard and rng.random() < 0.5:  # negation: the cue word says the opposite
            opposite = neg_words if label == "pos" else pos_words
            w1 = "not " + opposite[int(rng.integers(0, len(opposite)))]
        template = TEMPLATES[int(rng.integers(0, len(TEMPLATES)))]
        text = template.format(
            intent=INTENTS[intent][int(rng.integers(0, 4))],
            w1=w1,
            w2=w2,
            f=FILLER[int(rng.integers(0, len(FILLER)))],
            verb="love" if label == "pos" else "hate",
        )
        if hour < 6:  # tired typing at night
            text = " ".join(_typo(w, rng) if rng.random() < 0.15 else w for w in text.split(" "))
        if channel == "phone":
            text = "caller said " + text
        shown = label
        if channel == "phone" and rng.random() < broken_phone_labels:
            shown = "neg" if label == "pos" else "pos"
        rows.append(
            {
                "message_id": f"w{week}-{seed}-{i:06d}",
                "text": text,
                "label": shown,
                "intent": intent,
                "state": state,
                "channel": channel,
                "ts": ts,
                "hour": hour,
            }
        )
    return pd.DataFrame(rows)


def _hour_profile() -> np.ndarray:
    hours = np.arange(24)
    weight = 0.3 + np.exp(-((hours - 14) ** 2) / 30)
    return weight / weight.sum()
