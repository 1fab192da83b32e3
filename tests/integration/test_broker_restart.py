"""A RabbitMQ restart loses nothing: publishers wait and retry, consumers reconnect, and every message published
after the restart arrives (on a broker of the test's own, halted and booted again)."""

from __future__ import annotations

import threading
import time

import pytest

from luhyaapi.bus import RabbitMQBus
from luhyaapi.messages import Command
from tests.integration.conftest import RunningConsumer
from tests.rabbitmq import private_broker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.broker_restart]


def test_messages_published_around_a_broker_restart_all_arrive():
    with private_broker() as broker:
        url = broker.url
        queue = "restart.test"
        publisher = RabbitMQBus(url, publish_retry_seconds=90)
        consumer = RunningConsumer(RabbitMQBus(url), queue)
        try:
            before = [Command(op="status/report", paras={"n": n}) for n in range(20)]
            for message in before:
                publisher.publish(queue, message)
            assert len(consumer.wait_for(20)) == 20

            broker.stop()
            during = [Command(op="status/report", paras={"n": n}) for n in range(20, 30)]
            publishing = threading.Thread(target=lambda: [publisher.publish(queue, m) for m in during])
            publishing.start()
            time.sleep(2)
            assert publishing.is_alive(), "publish must wait for the broker, not drop the message"
            broker.start()
            publishing.join(timeout=90)
            assert not publishing.is_alive()

            after = [Command(op="status/report", paras={"n": n}) for n in range(30, 50)]
            for message in after:
                publisher.publish(queue, message)
            received = consumer.wait_for(50, timeout=60)
            ids = {message.msg_id for message in received}
            assert {message.msg_id for message in before + during + after} <= ids
            assert consumer.thread.is_alive()
        finally:
            if not broker.running():  # the consumer and publisher close on a running broker
                broker.start()
            consumer.close()
            publisher.close()
