"""The HTTP judge against a real OpenAI-compatible server that the test starts on 127.0.0.1
(a random free port): log-prob parsing, multi-token choices, retries, timeouts, bounded
concurrency, the cache. Only loopback traffic; every request loop here is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
import time

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from rlhfkit.feedback.backends import CachedJudge, HTTPJudge, JudgeError, JudgementCache  # noqa: E402
from rlhfkit.feedback.judge import (  # noqa: E402
    RATING_CHOICES,
    JudgePrompt,
    JudgeTemplate,
    expected_rating,
)
from rlhfkit.feedback.labeler import LabelPlan, Pair, label_pairs  # noqa: E402


@contextlib.contextmanager
def running(app):
    """Serve `app` with uvicorn on 127.0.0.1 at a free port in a thread; yield the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class FakeOpenAI:
    """Deterministic fake log-probs. Pairwise prompts (ending "=") favour "1" (0.7, plus 0.05 as
    " 1") over "2" (0.2); rating prompts ("Rating=") give "1" .5, "7" .3, "2" .1, and after "1"
    the next token is "0" with .6 or "." with .4."""

    def __init__(self):
        self.requests = 0
        self.fail_next = 0
        self.fail_status = 500
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = self._build()

    @staticmethod
    def _top(text: str) -> dict[str, float]:
        if text.endswith("Rating=1"):
            return {"0": math.log(0.6), ".": math.log(0.4)}
        if text.endswith("Rating="):
            return {"1": math.log(0.5), "7": math.log(0.3), "2": math.log(0.1)}
        return {"1": math.log(0.7), "2": math.log(0.2), " 1": math.log(0.05)}

    def _build(self):
        app = fastapi.FastAPI()

        async def gate():
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_flight -= 1
            if self.fail_next:
                self.fail_next -= 1
                raise fastapi.HTTPException(self.fail_status, "try again")

        @app.post("/v1/completions")
        async def completions(body: dict):
            await gate()
            if body.get("logprobs") is None or body["max_tokens"] != 1:
                return {"choices": [{"text": " because it is clearer", "logprobs": None}]}
            return {"choices": [{"text": "1", "logprobs": {"top_logprobs": [self._top(body["prompt"])]}}]}

        @app.post("/v1/chat/completions")
        async def chat(body: dict):
            await gate()
            if body.get("model") == "broken":
                raise fastapi.HTTPException(400, "unknown model 'broken'")
            if not body.get("logprobs"):
                return {"choices": [{"message": {"role": "assistant", "content": "Response 1 is clearer."}}]}
            top = [{"token": t, "logprob": lp} for t, lp in self._top(body["messages"][-1]["content"]).items()]
            return {"choices": [{"message": {"role": "assistant", "content": "1"},
                                 "logprobs": {"content": [{"token": "1", "logprob": top[0]["logprob"], "top_logprobs": top}]}}]}

        return app


@pytest.fixture(scope="module")
def fake():
    server = FakeOpenAI()
    with running(server.app) as url:
        server.url = url + "/v1"
        yield server


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.fail_next, fake.delay, fake.fail_status = 0, 0.0, 500
    fake.max_in_flight = 0


PAIR = JudgePrompt("Prompt: p\nResponse 1: a\nResponse 2: b\n\n", "Preferred response=")
RATE = JudgePrompt("Prompt: p\nResponse: a\n\n", "Rating=")


def test_completions_logprobs(fake):
    judge = HTTPJudge(fake.url, model="m", backoff=0.01)
    (lp,) = judge.choice_logprobs([PAIR], ["1", "2"])
    # "1" and " 1" are the same choice: log(0.7 + 0.05)
    assert lp == pytest.approx([math.log(0.75), math.log(0.2)])


def test_completions_multi_token_choice_and_expected_rating(fake):
    judge = HTTPJudge(fake.url, model="m", backoff=0.01)
    before = fake.requests
    (lp,) = judge.choice_logprobs([RATE], RATING_CHOICES)
    assert fake.requests - before == 2  # the prompt, then the prompt + "1" (to split "1" from "10")
    # P(10) = .5·.6 = .3, P(1) = .5·.4 = .2, P(7) = .3, P(2) = .1; choices not in the top-k get the
    # smallest shown probability, .1 (3, 4, 5, 6, 8, 9). Sum 1.5; Σ i·P(i) = .2 + .2 + 1.8 + 2.1 + 1.7 + 3 = 9
    # -> expected rating 9 / 1.5 = 6.
    assert math.exp(lp[9]) == pytest.approx(0.3)
    assert math.exp(lp[0]) == pytest.approx(0.2)
    assert expected_rating(lp) == pytest.approx(6.0)


def test_chat_logprobs_and_generation(fake):
    judge = HTTPJudge(fake.url, model="m", api="chat", backoff=0.01)
    (lp,) = judge.choice_logprobs([PAIR], ["1", "2"])
    assert lp == pytest.approx([math.log(0.75), math.log(0.2)])
    assert judge.generate([PAIR], max_new_tokens=8) == ["Response 1 is clearer."]


def test_retries_then_succeeds(fake):
    judge = HTTPJudge(fake.url, model="m", retries=3, backoff=0.01)
    fake.fail_next, fake.fail_status = 2, 503
    before = fake.requests
    (lp,) = judge.choice_logprobs([PAIR], ["1", "2"])
    assert fake.requests - before == 3
    assert lp[0] == pytest.approx(math.log(0.75))
    fake.fail_next, fake.fail_status = 1, 429
    assert judge.generate([PAIR], 5) == ["because it is clearer"]


def test_gives_up_after_retries(fake):
    judge = HTTPJudge(fake.url, model="m", retries=1, backoff=0.01)
    fake.fail_next = 5
    before = fake.requests
    with pytest.raises(JudgeError, match="no answer after 2 attempts.*HTTP 500"):
        judge.choice_logprobs([PAIR], ["1", "2"])
    assert fake.requests - before == 2


def test_client_errors_are_not_retried(fake):
    judge = HTTPJudge(fake.url, model="broken", api="chat", retries=3, backoff=0.01)
    before = fake.requests
    with pytest.raises(JudgeError, match="HTTP 400.*unknown model"):
        judge.choice_logprobs([PAIR], ["1", "2"])
    assert fake.requests - before == 1


def test_timeout(fake):
    judge = HTTPJudge(fake.url, model="m", timeout=0.2, retries=1, backoff=0.01)
    fake.delay = 1.0
    with pytest.raises(JudgeError, match="timed out after 0.2s"):
        judge.choice_logprobs([PAIR], ["1", "2"])


def test_unreachable_endpoint():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = HTTPJudge(f"http://127.0.0.1:{port}/v1", retries=1, backoff=0.01)
    with pytest.raises(JudgeError, match="no answer after 2 attempts"):
        judge.generate([PAIR], 5)


def test_bounded_concurrency():
    fresh = FakeOpenAI()  # its own server: no requests of other tests still in flight
    fresh.delay = 0.05
    with running(fresh.app) as url:
        judge = HTTPJudge(url + "/v1", model="m", concurrency=3, backoff=0.01)
        prompts = [JudgePrompt(f"Prompt: {i}\nResponse 1: a\nResponse 2: b\n\n", "Preferred response=") for i in range(9)]
        assert len(judge.choice_logprobs(prompts, ["1", "2"])) == 9
    assert fresh.requests == 9
    assert 1 <= fresh.max_in_flight <= 3


def test_cache_avoids_repeat_requests(fake, tmp_path):
    judge = CachedJudge(HTTPJudge(fake.url, model="m", backoff=0.01), JudgementCache(tmp_path / "j.sqlite"))
    before = fake.requests
    first = judge.choice_logprobs([PAIR, RATE], ["1", "2"])
    sent = fake.requests - before
    assert sent == 2
    assert judge.choice_logprobs([PAIR, RATE], ["1", "2"]) == first
    assert fake.requests - before == sent  # nothing new on the wire
    # a different model name is a different judge: not answered from the cache
    other = CachedJudge(HTTPJudge(fake.url, model="m2", backoff=0.01), JudgementCache(tmp_path / "j.sqlite"))
    other.choice_logprobs([PAIR], ["1", "2"])
    assert other.misses == 1


def test_label_pairs_through_http_with_cot(fake):
    judge = HTTPJudge(fake.url, model="m", api="chat", backoff=0.01)
    run = label_pairs(judge, [Pair("p", "a", "b", 1.0)], JudgeTemplate(), LabelPlan(swap=True, cot=True))
    # the fake always gives position 1 0.75 / (0.75 + 0.2) = 15/19, in both orders -> debiased ½
    assert run.techniques[0].p_first == pytest.approx([15 / 19])
    assert run.techniques[1].p_first == pytest.approx([0.5])
    assert run.table()[1]["same_position_rate"] == 1.0
    assert run.rationales == ["Response 1 is clearer."]
