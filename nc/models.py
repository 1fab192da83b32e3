"""The node controller's own records."""

from django.db import models


class CommandRecord(models.Model):
    """A command this node has taken, keyed so that a redelivered command is not run twice."""

    key = models.CharField(max_length=200, unique=True)
    op = models.CharField(max_length=64)
    msg_id = models.CharField(max_length=32)
    body = models.JSONField(default=dict, help_text="the command as received, to run it again after a restart")
    received_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-received_at",)

    def __str__(self) -> str:
        return f"{self.op} {self.key}"
