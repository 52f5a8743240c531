"""Where prompts run: a local causal LM, a local sentence encoder, or an OpenAI-compatible endpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlcrit.core.trust import refuse_remote_code
from airflow_mlcrit.exceptions import ConfigError, MissingDependencyError, MlcritError

log = logging.getLogger(__name__)


class CausalLMBackend:
    """Generation (greedy) and label scoring by log-likelihood with a local causal LM."""

    kind = "causal_lm"

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 16,
        max_length: int = 512,
        device: str = "auto",
        max_truncated_rate: float = 0.05,
    ):
        from airflow_mlcrit.core.evaluation.inference import ModelScorer

        self.scorer = ModelScorer(
            path,
            task="generation",
            batch_size=batch_size,
            max_length=max_length,
            device=device,
            max_truncated_rate=max_truncated_rate,
        )
        self.name = str(path)

    def truncated(self, prompts: list[str], what: str, *, new_tokens: int = 0, continuations: list[str] = ()) -> Any:
        """Per prompt, whether max_length cuts it (refused above the limit), after checking that
        max_length plus what follows the prompt (generated tokens, or the longest label) fits the
        model's context: both before any inference."""
        from airflow_mlcrit.core.truncation import refuse_truncation, token_lengths

        tok, max_length = self.scorer.tokenizer, self.scorer.max_length
        label = max((len(tok(" " + c, add_special_tokens=False)["input_ids"]) for c in continuations), default=0)
        lengths = token_lengths(tok, prompts) + label  # scored labels follow the prompt inside max_length
        cut = refuse_truncation(
            lengths, max_length, self.scorer.max_truncated_rate, what, "EvaluationConfig.max_truncated_rate"
        )
        seen = np.minimum(lengths, max_length) + new_tokens  # what the model holds at once
        context = self.scorer.context
        if context is not None and len(seen) and seen.max() > context:
            row = int(seen.argmax())
            raise ConfigError(
                f"{what}: row {row} needs {int(seen[row])} tokens at once ({int(lengths[row])} of input, cut to "
                f"max_length {max_length}, plus {new_tokens} generated), but {self.name} takes at most {context}; "
                f"lower EvaluationConfig.max_length to {context - new_tokens} or less, or shorten the prompt"
            )
        return cut

    def generate(self, prompts: list[str], decoding: dict[str, Any], prompt_digest: str = "") -> list[str]:
        self.scorer.max_new_tokens = int(decoding.get("max_new_tokens", 16))
        return self.scorer.generate(prompts)

    def label_logprobs(self, prompts: list[str], continuations: list[str]) -> np.ndarray:
        """(n, L): sum of log P(token) over the tokens of ``" " + continuation`` after each prompt."""
        torch, tok, model = self.scorer.torch, self.scorer.tokenizer, self.scorer.model
        conts = [tok(" " + c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(not c for c in conts):
            raise ConfigError(f"a verbalizer tokenizes to nothing: {continuations}")
        out = np.zeros((len(prompts), len(conts)))
        room = self.scorer.max_length - max(map(len, conts))  # a cut prompt keeps its end
        if room < 1:
            raise ConfigError(f"max_length {self.scorer.max_length} leaves no room for a prompt before its labels")
        with torch.no_grad():
            for i, prompt in enumerate(prompts):
                head = tok(prompt)["input_ids"][-room:]
                seqs = [head + c for c in conts]
                width = max(map(len, seqs))
                pad = tok.pad_token_id if tok.pad_token_id is not None else 0
                ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.scorer.device)
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.scorer.device)
                logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                for j, c in enumerate(conts):
                    positions = torch.arange(len(head) - 1, len(head) - 1 + len(c), device=ids.device)
                    targets = torch.tensor(c, device=ids.device)
                    out[i, j] = float(logp[j, positions, targets].sum())
        return out


class EncoderBackend:
    """Sentence embeddings (mean pooling, L2-normalised, as sentence-transformers does for
    all-MiniLM-L6-v2) for zero-shot classification and nearest-neighbour few-shot selection."""

    kind = "encoder"

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 64,
        max_length: int = 256,
        device: str = "auto",
        max_truncated_rate: float = 0.05,
    ):
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "torch", "train") from None
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ConfigError(f"encoder {path} is not a model directory (no config.json)")
        refuse_remote_code(path, False, "encoder")
        self.torch, self.name = torch, str(path)
        self.batch_size, self.max_length, self.max_truncated_rate = batch_size, max_length, max_truncated_rate
        self.device = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = (
            transformers.AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
            .to(self.device)
            .eval()
        )

    def truncated(self, texts: list[str], what: str, **_: Any) -> np.ndarray:
        """Per text, whether max_length cuts it; refused above max_truncated_rate, before inference."""
        from airflow_mlcrit.core.truncation import refuse_truncation, token_lengths

        lengths = token_lengths(self.tokenizer, texts)
        return refuse_truncation(
            lengths, self.max_length, self.max_truncated_rate, what, "EvaluationConfig.max_truncated_rate"
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        from airflow_mlcrit.core.evaluation.inference import length_batches

        torch, out = self.torch, None
        with torch.no_grad():
            for rows in length_batches(texts, self.batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in rows],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy().astype(np.float64)
                if out is None:
                    out = np.zeros((len(texts), vectors.shape[1]))
                out[rows] = vectors
        return out if out is not None else np.zeros((0, 0))


class HttpError(MlcritError):
    """The hosted model endpoint failed after all retries."""


def redact(url: str) -> str:
    """``url`` with any user:password part replaced: what every message and log line shows."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110: delay-seconds or an HTTP-date),
    capped at ``cap``; None for a missing or nonsense value (negative, not finite, unparseable)."""
    import email.utils
    import math
    from datetime import datetime, timezone

    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    delay = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(delay, 0.0), cap) if math.isfinite(delay) else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The endpoint's answers only: a redirect would re-send the request, key included, to
    wherever the server points (urllib follows a 302 with every header). Refused, naming where."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise HttpError(
            f"{redact(req.full_url)} answered {code} redirecting to {redact(newurl)}: redirects are not followed "
            "(the request carries the API key); configure the endpoint's final URL as base_url"
        )


class OpenAIBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint: bounded retries with backoff on 429 and
    5xx (honouring Retry-After), a request-rate limit, and a response cache on disk keyed by
    (model, prompt digest, rendered input), so a re-run sends nothing. The key goes only into the
    Authorization header: it is never logged, cached or returned."""

    kind = "http"
    RETRY = {429, 500, 502, 503, 504}

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        cache_dir: str | Path,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        requests_per_second: float | None = None,
        timeout_s: float = 60.0,
        max_retry_after_s: float = 60.0,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL must be http(s)://..., got {redact(base_url)!r}")
        if redact(base_url) != base_url:
            raise ConfigError(
                f"base URL {redact(base_url)!r} carries credentials: put the API key in the connection's "
                "password, where it is sent only in the Authorization header"
            )
        self.base_url, self.model, self.name = base_url.rstrip("/"), model, model
        self._key = api_key
        self.cache_dir = Path(cache_dir)
        self.max_retries, self.backoff_s, self.timeout_s = max_retries, backoff_s, timeout_s
        self.max_retry_after_s = max_retry_after_s
        self._opener = urllib.request.build_opener(_NoRedirects)
        self.min_interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._last = 0.0
        self.requests_sent = self.cache_hits = self.retries = 0

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({redact(self.base_url)!r}, model={self.model!r})"

    def truncated(self, texts: list[str], what: str, **_: Any) -> None:
        """Unknown here: the endpoint's tokenizer and context are not ours (it refuses what is too long)."""
        return None

    def _cache_path(self, prompt_digest: str, prompt: str, decoding: dict[str, Any]) -> Path:
        key = json.dumps([self.model, prompt_digest, prompt, decoding], sort_keys=True)
        h = hashlib.sha256(key.encode()).hexdigest()
        return self.cache_dir / h[:2] / f"{h}.json"

    def generate(self, prompts: list[str], decoding: dict[str, Any], prompt_digest: str = "") -> list[str]:
        out = []
        for prompt in prompts:
            path = self._cache_path(prompt_digest, prompt, decoding)
            if path.is_file():
                self.cache_hits += 1
                out.append(json.loads(path.read_text())["text"])
                continue
            text = self._complete(prompt, decoding)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"text": text}))
            tmp.replace(path)
            out.append(text)
        return out

    def _complete(self, prompt: str, decoding: dict[str, Any]) -> str:
        import urllib.error

        where = redact(self.base_url)
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": int(decoding.get("max_new_tokens", 16)),
                "temperature": 0,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.min_interval - (time.monotonic() - self._last)
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            request = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
            self.requests_sent += 1
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code not in self.RETRY:
                    raise HttpError(f"{where} answered {last} (not retried)") from None
                told = retry_after(exc.headers.get("Retry-After"), self.max_retry_after_s)
                delay = told if told is not None else self.backoff_s * 2**attempt
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = type(exc).__name__
                delay = self.backoff_s * 2**attempt
            except (KeyError, IndexError, TypeError, ValueError):
                raise HttpError(f"{where} returned a response without choices[0].message.content") from None
            if attempt < self.max_retries:
                self.retries += 1
                log.info(
                    "mlcrit: %s from %s, retry %s of %s in %.2fs", last, where, attempt + 1, self.max_retries, delay
                )
                time.sleep(delay)
        raise HttpError(f"{where} failed after {self.max_retries + 1} attempts (last: {last})")
