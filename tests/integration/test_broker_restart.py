"""A RabbitMQ restart loses nothing: publishers wait and retry, consumers reconnect, and every message published
after the restart arrives."""

from __future__ import annotations

import threading
import time

import pytest

from luhyaapi.bus import RabbitMQBus
from luhyaapi.messages import Command
from tests.integration.conftest import RunningConsumer
from tests.rabbitmq import scratch_vhost, start_broker, stop_broker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.broker_restart]


def test_messages_published_around_a_broker_restart_all_arrive():
    with scratch_vhost() as url:
        queue = "restart.test"
        publisher = RabbitMQBus(url, publish_retry_seconds=90)
        consumer = RunningConsumer(RabbitMQBus(url), queue)
        try:
            before = [Command(op="status/report", paras={"n": n}) for n in range(20)]
            for message in before:
                publisher.publish(queue, message)
            assert len(consumer.wait_for(20)) == 20

            stop_broker()
            during = [Command(op="status/report", paras={"n": n}) for n in range(20, 30)]
            publishing = threading.Thread(target=lambda: [publisher.publish(queue, m) for m in during])
            publishing.start()
            time.sleep(2)
            assert publishing.is_alive(), "publish must wait for the broker, not drop the message"
            start_broker()
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
            start_broker()
            consumer.close()
            publisher.close()
