"""Prompt specs, few-shot selection, chains and backends on real tiny models and a local server."""

import logging
import re

import numpy as np
import pandas as pd
import pytest

from airflow_mlcrit.core.prompting.backends import CausalLMBackend, HttpError, OpenAIBackend
from airflow_mlcrit.core.prompting.predict import PromptPredictor
from airflow_mlcrit.core.prompting.prompt import ChainStep, PromptSpec, select_examples
from airflow_mlcrit.exceptions import ConfigError, DataValidationError
from tests.helpers.models import build_tiny_gpt2
from tests.helpers.openai_server import FakeOpenAI

REVIEW = PromptSpec(
    template="Review: {{ text }} Sentiment:",
    variables=["text"],
    verbalizers={"neg": "negative", "pos": "positive"},
    name="prompt/review@v1",
)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


def test_spec_validation_rendering_and_the_sandbox():
    with pytest.raises(ConfigError, match=re.escape("PromptSpec.template uses ['product'] but declares only ['text']")):
        PromptSpec(template="{{ text }} about {{ product }}", variables=["text"])
    with pytest.raises(DataValidationError, match=re.escape("prompt prompt/review@v1 (row 3): 'text' is undefined")):
        REVIEW.render({"other": 1}, row=3)
    hostile = PromptSpec(template="{{ text.__class__.__mro__ }}", variables=["text"])
    with pytest.raises(
        ConfigError,
        match=re.escape("the sandbox refused: access to attribute '__class__' of 'str' object is unsafe"),
    ):
        hostile.render({"text": "x"})
    assert (
        REVIEW.digest == PromptSpec.from_dict({**REVIEW.to_dict(), "name": "other"}).digest
    )  # the name is not content
    assert REVIEW.digest != PromptSpec.from_dict({**REVIEW.to_dict(), "template": "R: {{ text }}"}).digest


def test_few_shot_selection():
    examples = [{"text": t, "label": label} for t, label in [("a b", "x"), ("c d", "y"), ("e f", "z"), ("g h", "w")]]
    spec = PromptSpec(template="{{ text }}", variables=["text"], few_shot={"examples": examples, "k": 2})
    assert select_examples(spec, ["q"]) == [examples[:2]]
    rnd = PromptSpec.from_dict(
        {**spec.to_dict(), "few_shot": {"examples": examples, "k": 2, "selection": "random", "seed": 1}}
    )
    assert (
        select_examples(rnd, ["q", "r"])[0] == select_examples(rnd, ["s"])[0]
        and len(select_examples(rnd, ["q"])[0]) == 2
    )
    near = PromptSpec.from_dict({**spec.to_dict(), "few_shot": {"examples": examples, "k": 1, "selection": "nearest"}})
    axis = {"a b": [1, 0, 0], "c d": [0, 1, 0], "e f": [0, 0, 1], "g h": [0.7, 0.7, 0], "near-e": [0.1, 0, 1]}
    embed = lambda texts: np.array([axis[t] for t in texts], dtype=float)  # noqa: E731
    assert select_examples(near, ["near-e"], embed) == [[examples[2]]]
    with pytest.raises(ConfigError, match=re.escape("few_shot.selection='nearest' needs an embedding model")):
        select_examples(near, ["q"])


def test_label_scoring_picks_the_most_likely_verbalizer(tiny_gpt2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backend = CausalLMBackend(tiny_gpt2, device="cpu")
    predictor = PromptPredictor([ChainStep(REVIEW, "prompt/review@v1")], backend, mode="score_labels")
    texts = ["what is the capital of france", "the color of the sky"]
    got = predictor.predict(texts)
    tok, model = AutoTokenizer.from_pretrained(tiny_gpt2), AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    for i, text in enumerate(texts):
        direct = []
        for label in ("neg", "pos"):
            head = tok(f"Review: {text} Sentiment:")["input_ids"]
            cont = tok(" " + REVIEW.verbalizers[label], add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([head + cont])).logits[0], -1)
            direct.append(sum(float(logp[len(head) - 1 + j, c]) for j, c in enumerate(cont)))
        assert got.pred[i] == int(np.argmax(direct))
        z = np.exp(np.array(direct) - max(direct))
        assert got.proba[i] == pytest.approx(z / z.sum(), abs=1e-6)


def test_a_chain_feeds_each_output_to_the_next_step(tiny_gpt2):
    first = PromptSpec(
        template="Q: {{ question }} A:",
        variables=["question"],
        decoding={"max_new_tokens": 2},
        output_variable="answer",
    )
    second = PromptSpec(template="Q: what is {{ answer }} A:", variables=["answer"], decoding={"max_new_tokens": 2})
    backend = CausalLMBackend(tiny_gpt2, device="cpu")
    predictor = PromptPredictor([ChainStep(first, "prompt/a@v1"), ChainStep(second, "prompt/b@v1")], backend)
    frame = pd.DataFrame({"question": ["what is the capital of france", "what is the color of the sky"]})
    out = predictor.predict_frame(frame)
    step1 = backend.generate([f"Q: {q} A:" for q in frame.question], {"max_new_tokens": 2})
    assert predictor.rendered[1] == [f"Q: what is {a} A:" for a in step1]
    assert list(out.pred) == [s.strip() for s in backend.generate(predictor.rendered[1], {"max_new_tokens": 2})]
    with pytest.raises(ConfigError, match=re.escape("chain step 0 (prompt/b@v1) needs output_variable")):
        PromptPredictor([ChainStep(second, "prompt/b@v1"), ChainStep(first, "prompt/a@v1")], backend)
    with pytest.raises(DataValidationError, match=re.escape("prompt prompt/a@v1 needs variable(s) ['question']")):
        predictor.predict_frame(pd.DataFrame({"text": ["x"]}))


def test_http_backend_retries_caches_and_hides_the_key(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "sk-test-PLANTED-0123456789"
    with FakeOpenAI(fail=[429, 503]) as server:
        backend = OpenAIBackend(server.url, secret, "canned-1", cache_dir=tmp_path / "cache", backoff_s=0.01)
        assert backend.generate(["Review: great stuff", "Review: awful"], {}, "sha256:p") == [" positive", " negative"]
        assert (backend.requests_sent, backend.retries, len(server.requests)) == (4, 2, 4)
        assert set(server.auth) == {f"Bearer {secret}"}
        again = OpenAIBackend(server.url, secret, "canned-1", cache_dir=tmp_path / "cache")
        assert again.generate(["Review: great stuff", "Review: awful"], {}, "sha256:p") == [" positive", " negative"]
        assert (again.requests_sent, again.cache_hits, len(server.requests)) == (0, 2, 4)  # nothing sent
        server.fail = [503] * 10
        failing = OpenAIBackend(
            server.url, secret, "canned-1", cache_dir=tmp_path / "c2", max_retries=2, backoff_s=0.01
        )
        with pytest.raises(HttpError, match=re.escape("failed after 3 attempts (last: HTTP 503)")):
            failing.generate(["Review: new"], {}, "sha256:p")
    assert secret not in caplog.text and secret not in repr(backend)
    assert not any(secret in p.read_text() for p in (tmp_path / "cache").rglob("*.json"))


def test_http_backend_keeps_to_its_request_rate(tmp_path, monkeypatch):
    from airflow_mlcrit.core.prompting import backends

    clock = {"now": 100.0}
    slept = []
    monkeypatch.setattr(backends.time, "monotonic", lambda: clock["now"])

    def sleep(seconds):
        slept.append(round(seconds, 6))
        clock["now"] += seconds

    monkeypatch.setattr(backends.time, "sleep", sleep)
    with FakeOpenAI() as server:
        backend = OpenAIBackend(server.url, None, "m", cache_dir=tmp_path / "c", requests_per_second=4)
        backend.generate([f"Review: text {i}" for i in range(3)], {}, "sha256:p")
    # the clock stands still between requests here, so each later request waits the full 0.25 s
    assert slept == [0.25, 0.25] and server.auth == [None, None, None]


def test_a_prompt_that_cuts_every_input_is_refused_before_inference(tiny_bert):
    """A long instruction pushes every review past max_length: the encoder would embed the same
    cut prefix for every row. Refused, naming the prompt, the lengths and max_length."""
    from transformers import AutoTokenizer

    from airflow_mlcrit.core.prompting.backends import EncoderBackend

    long = PromptSpec(
        template="great love fast excellent happy good " * 5 + "Review: {{ text }}",
        variables=["text"],
        verbalizers={"neg": "negative", "pos": "positive"},
        name="prompt/long@v1",
    )
    frame = pd.DataFrame({"text": ["good service", "awful and slow", "fine"]})
    backend = EncoderBackend(tiny_bert, max_length=32, device="cpu")
    calls = []
    backend.embed = lambda texts: calls.append(texts)  # inference must not start
    predictor = PromptPredictor([ChainStep(long, "prompt/long@v1")], backend, mode="similarity")
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    lengths = sorted(len(tok(long.render({"text": t}))["input_ids"]) for t in frame.text)
    with pytest.raises(DataValidationError) as err:
        predictor.predict_frame(frame)
    assert str(err.value).startswith(
        f"prompt prompt/long@v1: 3 of 3 inputs (100.0%) are longer than max_length 32 tokens (median {lengths[1]}, "
        f"longest {lengths[2]}) and would be truncated, above the limit of 5.0% (EvaluationConfig.max_truncated_rate)"
    )
    assert calls == []
    # the same prompt, short enough: every row's truncation flag is recorded (none cut)
    short = EncoderBackend(tiny_bert, max_length=64, device="cpu")
    out = PromptPredictor([ChainStep(long, "prompt/long@v1")], short, mode="similarity").predict_frame(frame)
    assert out.truncated.tolist() == [False, False, False]


def test_a_causal_lm_prompt_longer_than_the_context_is_refused_before_inference(tiny_gpt2):
    from transformers import AutoTokenizer

    spec = PromptSpec(template="Review: {{ text }} " + "very " * 80 + "Answer:", variables=["text"], name="p")
    backend = CausalLMBackend(tiny_gpt2, max_length=128, device="cpu")  # context: 64 positions
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    n = len(tok(spec.render({"text": "fine"}))["input_ids"])
    assert 64 - 16 < n <= 128
    predictor = PromptPredictor([ChainStep(spec, "prompt/p@v1")], backend, mode="generate")
    with pytest.raises(ConfigError) as err:
        predictor.predict_frame(pd.DataFrame({"text": ["fine"]}))
    assert str(err.value) == (
        f"prompt prompt/p@v1: row 0 needs {n + 16} tokens at once ({n} of input, cut to max_length 128, plus 16 "
        f"generated), but {tiny_gpt2} takes at most 64; lower EvaluationConfig.max_length to 48 or less, or "
        "shorten the prompt"
    )


class _Recorder:
    """A local HTTP server that records every request (method, path, headers) and answers with
    ``status`` and ``headers``."""

    def __init__(self, status: int = 200, headers: dict | None = None, body: bytes = b"{}"):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[tuple[str, str, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                if self.headers.get("Content-Length"):
                    self.rfile.read(int(self.headers["Content-Length"]))
                owner.seen.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_the_http_backend_never_follows_a_redirect_with_its_key(tmp_path, code):
    elsewhere = _Recorder()
    redirecting = _Recorder(code, {"Location": f"{elsewhere.url}/v1/chat/completions"})
    try:
        backend = OpenAIBackend(f"{redirecting.url}/v1", "sk-SECRET-9", "m", cache_dir=tmp_path, max_retries=0)
        with pytest.raises(HttpError) as err:
            backend.generate(["Review: fine"], {"max_new_tokens": 2})
        assert str(err.value) == (
            f"{redirecting.url}/v1/chat/completions answered {code} redirecting to {elsewhere.url}/v1/chat/completions: "
            "redirects are not followed (the request carries the API key); configure the endpoint's final URL as base_url"
        )
        assert elsewhere.seen == []  # nothing, so no key, reached the other host
        assert [s[2].get("Authorization") for s in redirecting.seen] == ["Bearer sk-SECRET-9"]
        assert not list(tmp_path.rglob("*.json"))  # and nothing was cached as the model's answer
    finally:
        elsewhere.close()
        redirecting.close()


def test_retry_after_is_parsed_per_rfc_9110_capped_and_nonsense_ignored():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from airflow_mlcrit.core.prompting.backends import redact, retry_after

    assert retry_after("5", 60) == 5.0 and retry_after("120", 60) == 60.0 and retry_after(None, 60) is None
    for nonsense in ("-1", "nan", "inf", "1e9999", "soon", "", "2.5"):
        assert retry_after(nonsense, 60) is None, nonsense
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after(soon, 60) <= 30
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 60) == 0.0  # in the past: no wait
    assert retry_after("Fri, 31 Dec 9999 23:59:59 GMT", 60) == 60.0  # far away: capped
    assert redact("https://user:sk-KEY@api.example.com/v1") == "https://***@api.example.com/v1"
    assert redact("https://api.example.com/v1") == "https://api.example.com/v1"


def test_credentials_in_the_base_url_are_refused_without_printing_them(tmp_path):
    with pytest.raises(ConfigError) as err:
        OpenAIBackend("https://user:sk-URL-KEY@api.example.com/v1", None, "m", cache_dir=tmp_path)
    assert str(err.value) == (
        "base URL 'https://***@api.example.com/v1' carries credentials: put the API key in the connection's "
        "password, where it is sent only in the Authorization header"
    )


_HOSTILE = [
    pytest.param(*case)
    for case in [
        ("{{ 10 ** 99999999 }}", "10 ** 99999999 has more than 4096 bits"),
        ("{{ 'a' * 10 ** 9 }}", "'*' would build 1,000,000,000 items (limit 1,000,000)"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "range(100000,) has more steps than a render may loop (1,000,000 in all)",
        ),
        ("{{ range(10 ** 9) | list | length }}", "range(1000000000,) has more steps than a render may loop"),
        ("{% for i in range(99999) %}{{ text * 20 }}{% endfor %}", "the output is longer than 1,000,000 characters"),
        # loops over data are counted too, not only range()
        (
            "{% for x in text.ljust(100000) %}{% for y in text.ljust(100000) %}{% endfor %}{% endfor %}",
            "the template takes more than 1,000,000 steps",
        ),
        # numbers given to string methods and filters are capped before anything is built
        ("{{ text.ljust(10**9)|length }}", "ljust() was given 1,000,000,000, more than 100,000"),
        ("{{ text|center(10**9) }}", "the filter 'center' was given 1,000,000,000, more than 100,000"),
        # format widths, whether as a filter (never folded at compile time), '%' or str.format
        ('{{ "%999999999d"|format(1) }}{{ text }}', "a format width over 100,000 in '%999999999d'"),
        ('{{ "%999999999d" % 1 }}{{ text }}', "a format width over 100,000 in '%999999999d'"),
        ('{{ "{:999999999}".format(1) }}{{ text }}', "a format width over 100,000 in '{:999999999}'"),
    ]
]


@pytest.mark.parametrize(("template", "refused"), _HOSTILE)
def test_templates_compile_at_once_and_render_within_bounds(template, refused):
    spec = PromptSpec(template=template, variables=["text"], name="prompt/hostile@v1")  # nothing evaluated here
    with pytest.raises(ConfigError) as err:
        spec.render({"text": "x"})
    assert str(err.value).startswith(f"prompt prompt/hostile@v1: the sandbox refused: {refused}")


def test_hostile_templates_stay_small_in_a_fresh_process():
    """Every hostile case above, plus lipsum and a shadowed loop guard, in a fresh process whose
    address space is capped at 1 GB (a case that built a 1 GB string would die of it): each is a
    ConfigError, and the process's peak stays under 300 MB. (Their times, all well under 2 s, are
    in docs/benchmarks.md; no test asserts a time.)"""
    import json
    import subprocess
    import sys

    cases = [c.values[0] for c in _HOSTILE] + [
        "{{ lipsum(1000000) }}",
        "{% set mlcrit_bounded_iter = 1 %}{% for x in text %}{% endfor %}",
    ]
    code = f"""
import json, resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
resource.setrlimit(resource.RLIMIT_CPU, (60, 60))  # a hang guard, not a measurement
from airflow_mlcrit.core.prompting.prompt import PromptSpec
from airflow_mlcrit.exceptions import ConfigError
out = []
for template in {cases!r}:
    try:
        PromptSpec(template=template, variables=["text"], name="evil").render({{"text": "x"}})
        out.append("rendered")
    except ConfigError as exc:
        out.append("ConfigError")
# VmHWM: this program's own peak (ru_maxrss keeps the forking parent's across exec on Linux)
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({{"results": out, "peak_mb": peak / 1024}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["results"] == ["ConfigError"] * len(cases)
    assert report["peak_mb"] < 300, report


def test_bounded_templates_still_render_what_real_prompts_do():
    spec = PromptSpec(
        template="{% for e in examples %}{{ e.text }} -> {{ e.label }}\n{% endfor %}{{ text * 2 }} {{ 2 ** 10 }} "
        "{% for i in range(3) %}{{ i }}{% endfor %}",
        variables=["text"],
    )
    assert spec.render({"text": "ab"}, [{"text": "great", "label": "pos"}]) == "great -> pos\nabab 1024 012"
