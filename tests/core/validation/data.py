"""Generated review data for validation tests: a clean table and one with known defects."""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ["CA", "NE", "NY", "TX"]
WORDS = ["good", "bad", "slow", "fast", "friendly", "rude", "price", "delivery", "quality", "support"]


def clean(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(5, 15))) + f" order {i}" for i in range(n)]
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "amount": rng.normal(50.0, 10.0, n),
            "region": rng.choice(REGIONS, n),
            "text": texts,
            "label": rng.integers(0, 2, n),
        }
    )


def dirty(n: int = 4000, seed: int = 1) -> pd.DataFrame:
    """(a) nulls in required `region`, (b) unseen region 'ZZ', (c) `amount` shifted by 3 sigma,
    (d) 5% duplicated rows, (e) an email address in 1% of texts."""
    df = clean(n, seed)
    k = n // 100
    df.loc[0 : k - 1, "region"] = None
    df.loc[k : 2 * k - 1, "region"] = "ZZ"
    df["amount"] = df["amount"] + 30.0
    df.loc[2 * k : 3 * k - 1, "text"] = [f"contact me at user{i}@example.com please" for i in range(k)]
    dup = df.iloc[3 * k : 3 * k + n // 20]
    return pd.concat([df, dup], ignore_index=True)


# (check, column) of every defect dirty() plants, as validation reports them
DIRTY_FINDINGS = [
    ("domain", "region"),
    ("drift", "amount"),
    ("duplicates", None),
    ("missing", "region"),
    ("pii", "text:email"),
    ("range", "amount"),
]


def write(df: pd.DataFrame, path) -> str:
    df.to_parquet(path, index=False)
    return str(path)
