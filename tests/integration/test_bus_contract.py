"""The bus contract (luhyaapi/bus.py), proved against the in-process bus and real RabbitMQ alike."""

from __future__ import annotations

import time
import uuid

import pytest

from luhyaapi.bus import RabbitMQBus, RetryLater
from luhyaapi.messages import Command, TaskStatus, encode
from tests.integration.conftest import RABBITMQ_URL


def _commands(count: int) -> list[Command]:
    return [Command(op="status/report", paras={"n": n}) for n in range(count)]


def test_a_published_message_arrives_typed_and_equal_but_as_a_new_object(bus, queue, start_consumer):
    sent = TaskStatus(tid="img-0000000a:img-0000000a:ins-0000000b", phase="preparing", state="downloading",
                      progress=10)
    bus.publish(queue, sent)
    received = start_consumer(bus, queue).wait_for(1)
    assert received == [sent]
    assert received[0] is not sent
    assert isinstance(received[0], TaskStatus)


def test_messages_arrive_in_order_in_batches_no_larger_than_asked(bus, queue, start_consumer):
    sent = _commands(50)
    for message in sent:
        bus.publish(queue, message)
    consumer = start_consumer(bus, queue, max_batch=10)
    assert consumer.wait_for(50) == sent
    assert max(consumer.batches) <= 10
    assert sum(consumer.batches) == 50


def test_messages_published_while_consuming_arrive_too(bus, queue, start_consumer):
    consumer = start_consumer(bus, queue)
    sent = _commands(20)
    for message in sent:
        bus.publish(queue, message)
    assert consumer.wait_for(20) == sent


def test_a_malformed_message_is_parked_with_its_reason_and_the_consumer_goes_on(bus, queue, start_consumer):
    bus.publish_raw(queue, b'{"type": "cmd", "op": "rm -rf /"}')
    bus.publish_raw(queue, b"\xff not even json")
    good = Command(op="status/report")
    bus.publish(queue, good)
    consumer = start_consumer(bus, queue)
    assert consumer.wait_for(1) == [good]
    parked = _wait_dead(bus, queue, 2)
    assert [letter.body for letter in parked] == [b'{"type": "cmd", "op": "rm -rf /"}', b"\xff not even json"]
    assert all(letter.reason.startswith("invalid message") for letter in parked)
    assert "op" in parked[0].reason
    later = Command(op="status/report")
    bus.publish(queue, later)
    assert consumer.wait_for(2) == [good, later]


def test_a_message_its_handler_fails_on_is_parked_alone_and_the_rest_are_handled(bus, queue, start_consumer):
    sent = _commands(5)
    poison = sent[2].msg_id

    def handler(messages):
        if any(message.msg_id == poison for message in messages):
            raise ValueError("cannot handle this one")

    for message in sent:
        bus.publish(queue, message)
    consumer = start_consumer(bus, queue, handler)
    assert consumer.wait_for(4) == [m for m in sent if m.msg_id != poison]
    parked = _wait_dead(bus, queue, 1)
    assert parked[0].body == encode(sent[2])
    assert parked[0].reason == "handler error: ValueError: cannot handle this one"


def test_retry_later_redelivers_instead_of_parking(bus, queue, start_consumer):
    attempts = []

    def handler(messages):
        attempts.append(len(messages))
        if len(attempts) == 1:
            raise RetryLater("database restarting")

    message = Command(op="status/report")
    bus.publish(queue, message)
    consumer = start_consumer(bus, queue, handler)
    assert consumer.wait_for(1, timeout=30) == [message]
    assert len(attempts) == 2
    assert bus.take_dead_letters(queue) == []


class _ConsumerDied(BaseException):
    """Stands for the consumer process dying mid-batch (it is not an ordinary handler error)."""


def test_a_consumer_that_dies_before_acknowledging_loses_nothing(bus, queue, start_consumer):
    sent = _commands(3)
    for message in sent:
        bus.publish(queue, message)

    def die(messages):
        raise _ConsumerDied()

    dying = start_consumer(bus, queue, die)
    dying.thread.join(timeout=20)
    assert isinstance(dying.error, _ConsumerDied)
    assert start_consumer(bus, queue).wait_for(3) == sent


def test_purge_drops_waiting_and_parked_messages(bus, queue, start_consumer):
    for message in _commands(3):
        bus.publish(queue, message)
    bus.publish_raw(queue, b"junk")
    bus.purge(queue)
    fresh = Command(op="status/report")
    bus.publish(queue, fresh)
    assert start_consumer(bus, queue).wait_for(1) == [fresh]
    time.sleep(0.3)
    assert bus.take_dead_letters(queue) == []


def _wait_dead(bus, queue, count, timeout=10.0):
    parked = []
    deadline = time.monotonic() + timeout
    while len(parked) < count and time.monotonic() < deadline:
        parked += bus.take_dead_letters(queue)
        time.sleep(0.05)
    assert len(parked) == count, f"expected {count} parked messages, got {parked}"
    return parked


@pytest.mark.rabbitmq
def test_rabbitmq_keeps_messages_for_a_consumer_that_connects_later(start_consumer):
    queue = f"test.{uuid.uuid4().hex[:12]}"
    publisher = RabbitMQBus(RABBITMQ_URL)
    sent = _commands(5)
    try:
        for message in sent:
            publisher.publish(queue, message)
        publisher.close()
        assert start_consumer(RabbitMQBus(RABBITMQ_URL), queue).wait_for(5) == sent
    finally:
        publisher.delete(queue)
