"""The bus contract (luhyaapi/bus.py), proved against the in-process bus and real RabbitMQ alike: what arrives, in
what batches, what is parked and why, and that only messages sealed for the queue by a trusted host arrive."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from luhyaapi import queues
from luhyaapi.bus import RabbitMQBus, RetryLater
from luhyaapi.bus_trust import ANY_HOST, Clause, QueuePolicy
from luhyaapi.messages import MESSAGE_CLASSES, Command, TaskStatus, encode
from luhyaapi.signing import seal, unseal
from luhyaapi.trust import own_key
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential
from tests.integration.conftest import RABBITMQ_URL
from tests.keys import enrolled_key, new_key


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
    malformed = seal(own_key(), queue, b'{"type": "cmd", "op": "rm -rf /"}')
    bus.publish_raw(queue, malformed)
    bus.publish_raw(queue, b"\xff not even json")
    good = Command(op="status/report")
    bus.publish(queue, good)
    consumer = start_consumer(bus, queue)
    assert consumer.wait_for(1) == [good]
    parked = _wait_dead(bus, queue, 2)
    assert {letter.body: letter.reason.split(":")[0] for letter in parked} == {
        malformed: "invalid message", b"\xff not even json": "refused"}
    assert "op" in next(letter.reason for letter in parked if letter.body == malformed)
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
    assert parked[0].body == seal(own_key(), queue, encode(sent[2])), "parked as it came: sealed by its sender"
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


def test_a_bounded_queue_keeps_its_newest_messages_within_its_bytes(bus, queue, start_consumer, monkeypatch):
    """The metrics queue's rule (``luhyaapi.queues.MAX_BYTES``): past its bound the oldest waiting messages go."""
    sent = [Command(op="status/report", paras={"n": n}) for n in range(10, 20)]
    size = max(len(seal(own_key(), queue, encode(message))) for message in sent)
    monkeypatch.setitem(queues.MAX_BYTES, queue, int(size * 3.5))
    for message in sent:
        bus.publish(queue, message)
    consumer = start_consumer(bus, queue)
    assert consumer.wait_for(3) == sent[-3:]
    time.sleep(0.3)
    assert consumer.received == sent[-3:]


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


def test_what_crosses_the_bus_is_the_message_json_sealed_by_its_sender_for_its_queue(bus, queue, start_consumer):
    sent = Command(op="status/report", paras={"café": "naïve"})
    bus.publish(queue, sent)
    start_consumer(bus, queue, policy=REFUSE_ALL)
    (parked,) = _wait_dead(bus, queue, 1)
    # Ed25519 signatures are deterministic: the very bytes this host's key seals for this queue, on either bus.
    assert parked.body == seal(own_key(), queue, encode(sent))
    envelope = json.loads(parked.body)
    assert envelope.keys() == {"envelope", "sender", "signature", "message"}
    assert (envelope["envelope"], envelope["sender"], envelope["message"]) == (1, own_key().name, encode(sent).decode())
    assert unseal(parked.body).message == encode(sent)


def test_a_parked_message_keeps_its_seal_and_is_taken_when_put_back(bus, queue, start_consumer):
    sent = Command(op="status/report")
    bus.publish(queue, sent)
    refusing = start_consumer(bus, queue, policy=REFUSE_ALL)
    (parked,) = _wait_dead(bus, queue, 1)
    assert parked.reason == "refused: test says no"
    refusing.close()
    bus.publish_raw(queue, parked.body)  # no time limit: a message may wait for hours
    assert start_consumer(bus, queue).wait_for(1) == [sent]


@pytest.mark.django_db(transaction=True)
def test_only_messages_sealed_for_the_queue_by_a_trusted_host_reach_the_handler(bus, queue, start_consumer):
    """Each refused message is parked with why, and logged on educloud.security; the good one arrives."""
    other_queue = f"{queue}.other"
    revoked = enrolled_key("nc-gone")
    HostCredential.objects.filter(name="nc-gone").update(state=KeyStateChoices.REVOKED)
    trusted = enrolled_key("nc-good")
    forged_as_me = new_key(own_key().name)
    tampered = json.loads(seal(own_key(), queue, encode(Command(op="status/report"))))
    tampered["message"] = tampered["message"].replace("status/report", "host/poweroff")
    attempts = {
        "unsigned": encode(Command(op="status/report")),
        "another key": seal(forged_as_me, queue, encode(Command(op="status/report"))),
        "unknown host": seal(new_key("stranger"), queue, encode(Command(op="status/report"))),
        "revoked host": seal(revoked, queue, encode(Command(op="status/report"))),
        "another queue": seal(own_key(), other_queue, encode(Command(op="status/report"))),
        "changed": json.dumps(tampered).encode(),
    }
    for body in attempts.values():
        bus.publish_raw(queue, body)
    good = Command(op="status/report")
    bus.publish(queue, good, key=trusted)
    consumer = start_consumer(bus, queue)
    assert consumer.wait_for(1) == [good]
    parked = {letter.body: letter.reason for letter in _wait_dead(bus, queue, len(attempts))}
    reasons = {what: parked[body] for what, body in attempts.items()}
    assert reasons == {
        "unsigned": "refused: unsigned message: not an eduCloud envelope (version 1)",
        "another key": f"refused: wrong signature: not sealed by {own_key().name} for {queue}",
        "unknown host": "refused: stranger is not a trusted host of this cloud (unknown, or its key was revoked)",
        "revoked host": "refused: nc-gone is not a trusted host of this cloud (unknown, or its key was revoked)",
        "another queue": f"refused: wrong signature: not sealed by {own_key().name} for {queue}",
        "changed": f"refused: wrong signature: not sealed by {own_key().name} for {queue}",
    }
    time.sleep(0.3)
    assert consumer.received == [good], "no refused message reaches the handler"
    bus.delete(other_queue)


def test_refusals_are_logged_as_security_events(bus, queue, start_consumer, caplog):
    bus.publish(queue, Command(op="status/report"))
    start_consumer(bus, queue, policy=REFUSE_ALL)
    _wait_dead(bus, queue, 1)
    refusals = [record for record in caplog.records if record.name == "educloud.security"]
    assert [record.getMessage() for record in refusals] == [
        f"bus: refused a message on {queue} from {own_key().name}: test says no"]


REFUSE_ALL = QueuePolicy("a refusing queue", (Clause(ANY_HOST, MESSAGE_CLASSES, lambda *_: "test says no"),))


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
