"""Logs (proxy/logs.py): no key reaches a line, however deep it sits in a field."""

import asyncio
import contextlib
import io
import json
import logging
import random
from collections.abc import Iterator

from proxy import logs
from proxy.logs import Scrubber

KEY = "0123456789abcdef0123456789abcdef"  # shaped like one of our API keys


def test_keys_are_scrubbed_from_nested_fields_of_a_line():
    with logs.captured("info", secrets=["provider-secret"]) as buffer:
        logging.getLogger("proxy.test").info(
            "operator action",
            extra={
                "detail": {"memo": f"key {KEY} pasted by mistake", "nested": [{"deep": "provider-secret"}]},
                "items": ("key=hunter2", 5, None, True),
                "error": ValueError(f"failed with {KEY}"),
                "raw": b"token=abc123",
            },
        )
    text = buffer.getvalue()
    line = json.loads(text)
    assert KEY not in text and "provider-secret" not in text and "hunter2" not in text and "abc123" not in text
    assert line["detail"] == {"memo": "key *** pasted by mistake", "nested": [{"deep": "***"}]}
    assert line["items"] == ["key=***", 5, None, True]
    assert line["error"] == "failed with ***" and line["raw"] == "token=***"


def test_a_line_holds_its_time_level_logger_context_fields_and_exception():
    with logs.captured("info") as buffer, logs.bound(request_id="r-1", client="alice"):
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("proxy.test").exception("failed %s", "here", extra={"order": 7, "ms": 1.5})
    line = json.loads(buffer.getvalue())
    assert (line["event"], line["logger"], line["level"]) == ("failed here", "proxy.test", "error")
    assert (line["request_id"], line["client"], line["order"], line["ms"]) == ("r-1", "alice", 7, 1.5)
    assert "ValueError: boom" in line["exception"]
    assert line["timestamp"].endswith("Z") and line["timestamp"][10] == "T"


def test_a_bound_field_is_scrubbed_unless_it_cannot_hold_a_key():
    with logs.captured("info", secrets=["provider-secret"]) as buffer, logs.bound(target=f"key={KEY}"):
        logging.getLogger("proxy.test").info("x", extra={"note": "provider-secret", "path": f"/api/v2/{KEY}"})
    line = json.loads(buffer.getvalue())
    assert (line["target"], line["note"], line["path"]) == ("key=***", "***", "/api/v2/***")


def test_binding_is_per_task_and_cleared_per_request():
    import asyncio

    async def main() -> list[str]:
        logs.clear()
        logs.bind(request_id="outer")

        async def task() -> str:
            logs.bind(order=1)
            return logs.current("order") + logs.current("request_id")

        inner = await asyncio.create_task(task())
        return [inner, logs.current("order"), logs.current("request_id")]

    assert asyncio.run(main()) == ["1outer", "", "outer"]


def test_the_access_line_written_straight_to_our_handler_is_the_line_logging_writes(caplog):
    """A served router's only handler is ours: `logs.info` then skips the
    logging machinery (no record reaches another handler), writing the same line."""
    caplog.set_level(logging.INFO)
    root = logging.getLogger()
    others = list(root.handlers)  # pytest's, which capture records
    logger = logging.getLogger("proxy.access")
    fields = {"status": 200, "ms": 1.25, "method": "POST", "path": f"/api/v2/{KEY}"}
    with logs.captured("info", secrets=["provider-secret"]) as buffer, logs.bound(request_id="r-1", client="alice"):
        logs.info(logger, f"POST /api/v2/{KEY} 200", fields)  # others listen: through logging
        for handler in others:
            root.removeHandler(handler)
        try:
            logs.info(logger, f"POST /api/v2/{KEY} 200", fields)  # ours alone: straight to it
        finally:
            for handler in others:
                root.addHandler(handler)
    through, straight = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert [r.name for r in caplog.records] == ["proxy.access"]  # only the first went through logging
    assert through.pop("timestamp") and straight.pop("timestamp")
    assert (
        through
        == straight
        == {
            "event": "POST /api/v2/*** 200",
            "request_id": "r-1",
            "client": "alice",
            "status": 200,
            "ms": 1.25,
            "method": "POST",
            "path": "/api/v2/***",
            "logger": "proxy.access",
            "level": "info",
        }
    )


# The shape of an admin API token (secrets.token_urlsafe(32)): known to no scrubber by value.
TOKEN = "In1nC-g8J_ZKDb5UWp3N8e-dkIgq4esgu49OeB-nc-8"


def test_a_key_glued_to_other_characters_and_a_token_shaped_text_are_scrubbed():
    """A client's X-Request-ID or a path may hold a key beside letters or an
    underscore (no word boundary), or an admin token (no value to match)."""
    texts = [f"x_{KEY}", f"a{KEY}b", f"/p/_{KEY}", f"{KEY}{KEY}", TOKEN, f"/admin/{TOKEN}?", f"Bearer_{TOKEN}"]
    with logs.captured("info") as buffer:
        for text in texts:
            logging.getLogger("proxy.test").info(text, extra={"path": text})
    out = buffer.getvalue()
    assert KEY not in out and TOKEN not in out
    assert KEY[4:28] not in out and TOKEN[4:36] not in out


class CountingStream(io.StringIO):
    """A log file that counts its writes (each one a system call on a real file)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@contextlib.contextmanager
def others_set_aside() -> Iterator[None]:
    """Our handler the only one listening (pytest's set aside), as in a served router."""
    root = logging.getLogger()
    others = [handler for handler in root.handlers if not isinstance(handler, logs._Handler)]
    for handler in others:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


@contextlib.contextmanager
def served(stream: io.StringIO) -> Iterator[None]:
    """Logs as a served router has them: our JSON handler, and no other (pytest's set aside)."""
    root = logging.getLogger()
    others = list(root.handlers)
    for handler in others:
        root.removeHandler(handler)
    logs.configure("json", "info", stream=stream)
    try:
        yield
    finally:
        logs.unconfigure()
        for handler in others:
            root.addHandler(handler)


async def test_lines_of_one_turn_of_the_loop_go_out_in_one_write_and_in_order():
    stream = CountingStream()
    with served(stream):
        logger = logging.getLogger("proxy.test")
        for n in range(3):
            logs.info(logger, f"order {n} placed", {"order": n})
        logger.warning("a warning logged between them")  # written after the lines queued before it
        logs.info(logger, "order 3 placed", {"order": 3})
        assert stream.writes == 2  # the three queued lines in one write, then the warning
        await asyncio.sleep(0)  # the loop's turn ends: what is queued is written
        events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
        assert events == [*(f"order {n} placed" for n in range(3)), "a warning logged between them", "order 3 placed"]
        assert stream.writes == 3


async def test_a_queued_line_is_rendered_with_the_context_and_time_of_its_call():
    """Lines are rendered when the turn's write comes, but hold what was true when
    each was logged: the request bound after it, or a later time, change nothing."""
    stream = CountingStream()
    with served(stream):
        logger = logging.getLogger("proxy.test")
        logs.clear(request_id="first")
        logs.info(logger, "GET /api/v2 200", {"status": 200})
        logs.clear(request_id="second")
        logs.bind(client="bob")
        logs.info(logger, "POST /api/v2 200", {"status": 200})
        assert stream.getvalue() == ""  # queued, not yet rendered
        await asyncio.sleep(0.01)
        first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "first" and "client" not in first
    assert second["request_id"] == "second" and second["client"] == "bob"
    assert first["timestamp"] <= second["timestamp"]


async def test_a_field_json_cannot_hold_as_a_number_is_written_as_text_and_holds_back_no_line():
    stream = CountingStream()
    with served(stream):
        logger = logging.getLogger("proxy.test")
        logs.info(logger, "a huge number", {"n": 2**70, "nested": [2**70], "key": "ab" * 16})
        logs.info(logger, "the next line", {"n": 1})
        await asyncio.sleep(0)
        huge, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert huge["n"] == str(2**70) and huge["nested"] == str([2**70]) and "ab" * 16 not in huge["key"]
    assert after["event"] == "the next line" and after["n"] == 1


def test_outside_an_event_loop_a_line_is_written_at_once():
    stream = CountingStream()
    with served(stream):
        logs.info(logging.getLogger("proxy.test"), "a command's line", {})
        assert json.loads(stream.getvalue())["event"] == "a command's line"


def test_the_cheap_test_for_text_without_keys_never_spares_text_the_pattern_would_change():
    """`Scrubber.text` skips its pattern for text it can tell holds nothing to
    scrub: on every text, the result must be the pattern's own."""
    rng = random.Random(17)
    secrets = ["provider-secret", "Sim-Key-42"]
    scrubber = Scrubber(secrets)
    alphabet = "abcdefABCDEF0123456789xyzXYZ_-=&? ./:kKsS\u212a\u017f\u0131\u0130é"
    pieces = [
        "key=",
        "TOKEN=",
        "provider-SECRET",
        "sim-key-42",
        KEY,
        TOKEN,
        "a" * 31,
        "f" * 32,
        "Z" * 43,
        "order 7 placed",
        # What IGNORECASE matches beyond ASCII: the Kelvin sign is a k, the long s an s, dotted and dotless I an i.
        "\u017fim-\u212aey-42",
        "prov\u0130der-secret",
        "\u212a" * 43,
        "a" * 31 + "\u017f",
        "F" * 31 + "\u212a",
    ]
    for _ in range(5000):
        text = "".join(
            rng.choice(pieces) if rng.random() < 0.1 else rng.choice(alphabet) for _ in range(rng.randrange(1, 80))
        )
        assert scrubber.text(text) == scrubber.pattern.sub(Scrubber._replace, text), text


async def test_a_captured_buffer_holds_the_lines_queued_after_a_reload_brought_secrets():
    """`add_secrets` (a config reload) makes our handler again: what the new one
    queues must be in the captured buffer when a test reads it, or a test that
    asserts a key is absent passes on a line never written."""
    logger = logging.getLogger("proxy.test")
    with logs.captured("info") as buffer:
        logs.add_secrets(["rotated-provider-key"])
        with others_set_aside():
            logs.info(logger, "upstream said rotated-provider-key", {})
            text = buffer.getvalue()  # in the same turn of the loop
    assert "upstream said ***" in text
    assert "rotated-provider-key" not in text


def test_a_flush_a_closed_loop_never_ran_holds_back_no_line_of_a_later_loop():
    """A loop may close with our flush still due (stopped in the turn that
    queued a line): the lines queued on the next loop must still go out."""
    stream = io.StringIO()
    logger = logging.getLogger("proxy.test")
    with served(stream):
        loop = asyncio.new_event_loop()

        def last_turn() -> None:
            logs.info(logger, "the old loop's last line", {})
            loop.stop()  # its flush is due on the next turn, which never comes

        loop.call_soon(last_turn)
        loop.run_forever()
        loop.close()

        async def later() -> None:
            logs.info(logger, "a later loop's line", {})
            await asyncio.sleep(0)  # a turn ends: what is queued is written

        asyncio.run(later())
        events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["the old loop's last line", "a later loop's line"]


class BrokenStream(io.StringIO):
    """A log stream whose reader went away (EPIPE) or whose disk is full."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_or_closed_stream_is_never_an_exception_from_a_line():
    logger = logging.getLogger("proxy.test")
    closed = io.StringIO()
    for stream in (BrokenStream(), closed):
        with served(stream):
            closed.close()
            logs.info(logger, "a command's line", {})  # outside a loop: written at once

            async def served_line() -> None:
                logs.info(logger, "a request's line", {})
                await asyncio.sleep(0)

            asyncio.run(served_line())


async def test_a_turn_that_never_yields_holds_a_bounded_number_of_lines():
    """Lines wait for the end of the loop's turn, but a task that logs on and
    on without yielding must not keep them all in memory (nor unwritten)."""
    stream = CountingStream()
    with served(stream):
        logger = logging.getLogger("proxy.test")
        for n in range(10_000):
            logs.info(logger, f"order {n} checked", {"order": n})
        held = 10_000 - len(stream.getvalue().splitlines())
        assert held <= logs.QUEUED_LINES
        assert stream.writes <= 10_000 // logs.QUEUED_LINES + 1  # still a write for many lines
        await asyncio.sleep(0)
        assert len(stream.getvalue().splitlines()) == 10_000
